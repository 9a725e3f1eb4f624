"""Windows: who may change the service's configuration, token and spool (owner and DACL).

NOT RUN ON WINDOWS YET: written against pywin32's documented win32security API; only the pure
decision (:func:`ace_problems`) is tested, on Linux. ``install-agent.ps1`` sets what this checks:
owner Administrators, access for SYSTEM and Administrators only.
"""

from __future__ import annotations

from collections.abc import Iterable

from canhgac_agent.permissions import TrustedPath

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
TRUSTED_INSTALLER_SID = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
TRUSTED_SIDS = frozenset({SYSTEM_SID, ADMINISTRATORS_SID, TRUSTED_INSTALLER_SID})

ACCESS_ALLOWED_ACE_TYPE = 0
INHERIT_ONLY_ACE = 0x8
FILE_READ_DATA = 0x1
# Any of these lets the holder change the object or its access rules.
WRITE_RIGHTS = (0x2 | 0x4 | 0x10 | 0x100  # WriteData, AppendData, WriteEA, WriteAttributes
                | 0x40  # DeleteChild (a folder's files)
                | 0x10000 | 0x40000 | 0x80000  # DELETE, WRITE_DAC, WRITE_OWNER
                | 0x40000000 | 0x10000000)  # GENERIC_WRITE, GENERIC_ALL
READ_RIGHTS = FILE_READ_DATA | 0x80000000 | 0x10000000  # ReadData, GENERIC_READ, GENERIC_ALL


def ace_problems(item: TrustedPath, owner_sid: str,
                 aces: Iterable[tuple[int, int, int, str]]) -> tuple[list[str], list[str]]:
    """Return (refusals, warnings) for one path from its owner and its (type, flags, mask, sid) ACEs."""
    refusals: list[str] = []
    warnings: list[str] = []
    if owner_sid not in TRUSTED_SIDS:
        refusals.append(f"{item.role} {item.path}: chủ sở hữu {owner_sid}, phải là SYSTEM hoặc "
                        f"Administrators / owned by {owner_sid}, must be SYSTEM or Administrators")
    for ace_type, flags, mask, sid in aces:
        if ace_type != ACCESS_ALLOWED_ACE_TYPE or flags & INHERIT_ONLY_ACE or sid in TRUSTED_SIDS:
            continue
        if mask & WRITE_RIGHTS:
            refusals.append(f"{item.role} {item.path}: {sid} được ghi (0x{mask:x}) / {sid} may "
                            f"write (0x{mask:x})")
        elif item.is_secret and mask & READ_RIGHTS:
            warnings.append(f"{item.role} {item.path}: {sid} đọc được / {sid} may read")
    return refusals, warnings


def windows_problems(items: Iterable[TrustedPath]) -> tuple[list[str], list[str]]:  # pragma: no cover - Windows only
    """Return (refusals, warnings) for trusted paths, reading owners and DACLs with pywin32."""
    import win32security

    refusals: list[str] = []
    warnings: list[str] = []
    wanted = win32security.OWNER_SECURITY_INFORMATION | win32security.DACL_SECURITY_INFORMATION
    for item in items:
        if not item.path.exists():
            continue
        descriptor = win32security.GetNamedSecurityInfo(
            str(item.path), win32security.SE_FILE_OBJECT, wanted)
        owner = win32security.ConvertSidToStringSid(descriptor.GetSecurityDescriptorOwner())
        dacl = descriptor.GetSecurityDescriptorDacl()
        if dacl is None:  # a NULL DACL grants everyone everything
            refusals.append(f"{item.role} {item.path}: không có DACL / no DACL (everyone has access)")
            continue
        aces = []
        for index in range(dacl.GetAceCount()):
            ace = dacl.GetAce(index)  # ((type, flags), mask, [object GUIDs,] sid)
            (ace_type, flags), mask, sid = ace[0], ace[1], ace[-1]
            aces.append((ace_type, flags, mask, win32security.ConvertSidToStringSid(sid)))
        found = ace_problems(item, owner, aces)
        refusals += found[0]
        warnings += found[1]
    return refusals, warnings
