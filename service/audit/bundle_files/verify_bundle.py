#!/usr/bin/env python3
"""Kiểm tra gói bằng chứng Canh Gác / verify a Canh Gác evidence bundle.

Cần Python 3.9+ và gói `cryptography` / needs Python 3.9+ and the `cryptography` package.

    python verify_bundle.py bang-chung.zip [--key "name+keyid+base64" | --key khoa.txt]
                            [--witness-key "name+keyid+base64" ... [--quorum N]]

Không có --key: tin khóa verifier.key trong gói (hãy so với bản đã lưu trên giấy).
Có --key: chỉ tin khóa đó. / Without --key the bundle's own verifier.key is trusted (compare
it with the copy kept on paper); with --key only that key is trusted.
--witness-key: checkpoint trong gói phải được nhân chứng này ký (cosignature/v1); --quorum N:
đủ N nhân chứng (mặc định: tất cả). / the bundle's checkpoint, or one it cites, must be
cosigned by this witness (C2SP tlog-cosignature); --quorum N of them (default: all).

This is a deliberately independent implementation of the checks (RFC 6962 leaf hashing,
RFC 9162 inclusion and consistency proofs, C2SP signed-note Ed25519 signatures, C2SP
checkpoint bodies, C2SP tlog-cosignature cosignature/v1), so a
verifier does not have to trust the server's code. Exit 0 when every entry is proven, 1 when
the bundle does not verify, 2 on a usage error.
"""

import base64
import binascii
import datetime
import hashlib
import json
import os
import sys
import zipfile

FORMAT = "canhgac-evidence-bundle/1"
VIETNAM = datetime.timezone(datetime.timedelta(hours=7))
ENTRY_FIELDS = {"seq", "recorded_at", "kind", "body"}


class Invalid(Exception):
    """The bundle does not verify: the reason in English, and in Vietnamese (vi)."""

    def __init__(self, message, vi=None):
        super().__init__(message)
        self.vi = vi


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def b64decode(text):
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def root_from_inclusion_proof(index, size, leaf, proof):
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        raise Invalid("entry number beyond the tree size", "số mục vượt quá kích thước cây")
    inner = (index ^ (size - 1)).bit_length()
    expected = inner + bin(index >> inner).count("1")
    if len(proof) != expected or any(len(p) != 32 for p in proof):
        raise Invalid("inclusion proof has the wrong shape", "bằng chứng bao hàm sai cấu trúc")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Invalid("inclusion proof too long", "bằng chứng bao hàm quá dài")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Invalid("inclusion proof too short", "bằng chứng bao hàm quá ngắn")
    return r


def check_consistency(old_size, new_size, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2: the tree of new_size extends the tree of old_size."""
    if old_size == 0:
        return
    if old_size == new_size:
        if proof or old_root != new_root:
            raise Invalid("two different roots for one tree size", "hai gốc khác nhau cho cùng một kích thước cây")
        return
    if old_size > new_size or any(len(p) != 32 for p in proof):
        raise Invalid("consistency proof has the wrong shape", "bằng chứng nhất quán sai cấu trúc")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise Invalid("consistency proof is empty", "bằng chứng nhất quán rỗng")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("consistency proof too long", "bằng chứng nhất quán quá dài")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise Invalid("consistency proof does not verify", "bằng chứng nhất quán không khớp")


def parse_witness_key(text):
    """name+keyid+base64(0x04 || 32-byte Ed25519 key): a cosignature/v1 verifier key."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not parts[0]:
        raise Invalid("malformed witness key", "khóa nhân chứng sai định dạng")
    name, key_id, key64 = parts
    try:
        raw = b64decode(key64)
    except (ValueError, binascii.Error):
        raise Invalid("malformed witness key", "khóa nhân chứng sai định dạng") from None
    if len(raw) != 33 or raw[0] != 4:
        raise Invalid("a witness key has type 0x04 (Ed25519 cosignature/v1)",
                      "khóa nhân chứng phải có kiểu 0x04 (Ed25519 cosignature/v1)")
    expected = hashlib.sha256(name.encode("utf-8") + b"\n" + raw).digest()[:4]
    if expected.hex() != key_id.lower():
        raise Invalid("witness key id does not match its key", "mã khóa nhân chứng không khớp với khóa")
    return name, expected, raw[1:]


def count_cosigners(note, text, witnesses):
    """Count the witnesses with a valid cosignature/v1 line on the note's checkpoint."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    found = set()
    for line in note.split("\n"):
        if not line.startswith("\u2014 "):
            continue
        name, _, sig64 = line[2:].partition(" ")
        try:
            raw = base64.b64decode(sig64, validate=True)
        except (ValueError, binascii.Error):
            continue
        for key_name, key_id, public in witnesses:
            if key_name != name or raw[:4] != key_id or key_name in found:
                continue
            if len(raw) != 76:
                raise Invalid("malformed cosignature by " + name, "chữ ký nhân chứng sai định dạng: " + name)
            stamp = int.from_bytes(raw[4:12], "big")
            message = f"cosignature/v1\ntime {stamp}\n".encode("ascii") + text.encode("utf-8")
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(raw[12:], message)
            except InvalidSignature:
                raise Invalid("invalid cosignature by " + name, "chữ ký nhân chứng không hợp lệ: " + name) from None
            found.add(key_name)
    return len(found)


def parse_verifier_key(text):
    """name+keyid+base64(0x01 || 32-byte Ed25519 public key); key id checked."""
    parts = text.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3 or not parts[0]:
        raise Invalid("malformed verifier key", "khóa xác minh sai định dạng")
    name, key_id, key64 = parts
    try:
        raw = b64decode(key64)
    except (ValueError, binascii.Error):
        raise Invalid("malformed verifier key", "khóa xác minh sai định dạng") from None
    if len(raw) != 33 or raw[0] != 1:
        raise Invalid("only Ed25519 verifier keys are supported", "chỉ hỗ trợ khóa xác minh Ed25519")
    expected = hashlib.sha256(name.encode("utf-8") + b"\n" + raw).digest()[:4]
    if expected.hex() != key_id.lower():
        raise Invalid("verifier key id does not match its key", "mã khóa không khớp với khóa xác minh")
    return name, expected, raw[1:]


def open_note(note, keys, what):
    """Return (text, name of the first trusted signer) of a C2SP signed note."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        note = note.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(what + ": not UTF-8", what + ": không phải văn bản UTF-8") from None
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Invalid(what + ": not a signed note", what + ": không phải văn bản có chữ ký")
    text, block = note[: split + 1], note[split + 2 :]
    signer = None
    for line in block[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Invalid(what + ": malformed signature line", what + ": dòng chữ ký sai định dạng")
        name, _, sig64 = line[2:].partition(" ")
        try:
            sig = base64.b64decode(sig64, validate=True)
        except (ValueError, binascii.Error):
            raise Invalid(what + ": malformed signature", what + ": chữ ký sai định dạng") from None
        for key_name, key_id, public in keys:
            if key_name == name and sig[:4] == key_id:
                try:
                    Ed25519PublicKey.from_public_bytes(public).verify(sig[4:], text.encode("utf-8"))
                except InvalidSignature:
                    raise Invalid(what + ": invalid signature by " + name,
                                  what + ": chữ ký không khớp (nội dung đã bị sửa), ký bởi " + name) from None
                signer = signer or name
    if signer is None:
        raise Invalid(what + ": not signed by the trusted key", what + ": không được ký bằng khóa bạn tin")
    return text, signer


def parse_checkpoint(text, origin):
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] != origin:
        raise Invalid("checkpoint is not from the log of the trusted key",
                      "checkpoint không thuộc nhật ký của khóa bạn tin")
    size_text = lines[1]
    if not size_text.isdigit() or not size_text.isascii() or str(int(size_text)) != size_text:
        raise Invalid("malformed checkpoint size", "kích thước trong checkpoint sai định dạng")
    try:
        root = b64decode(lines[2])
    except (ValueError, binascii.Error):
        raise Invalid("malformed checkpoint root", "gốc trong checkpoint sai định dạng") from None
    if len(root) != 32:
        raise Invalid("malformed checkpoint root", "gốc trong checkpoint sai định dạng")
    return int(size_text), root


def verify(path, key_texts, witness_texts=(), quorum=None):
    """Check the bundle; return a summary dict or raise Invalid."""
    try:
        with zipfile.ZipFile(path) as bundle:
            files = {name: bundle.read(name) for name in (
                "entries.jsonl", "checkpoint.txt", "verifier.key", "manifest.json", "manifest.sig")}
            if "consistency.jsonl" in bundle.namelist():
                files["consistency.jsonl"] = bundle.read("consistency.jsonl")
    except KeyError as exc:
        raise Invalid("not a complete bundle: " + str(exc), "gói không đầy đủ: thiếu tệp trong gói") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise Invalid("not a readable bundle: " + str(exc),
                      "không đọc được gói (không phải tệp .zip nguyên vẹn)") from None
    if not key_texts:
        key_texts = [files["verifier.key"].decode("utf-8", "replace")]
    keys = [parse_verifier_key(k) for k in key_texts]

    text, signer = open_note(files["checkpoint.txt"], keys, "checkpoint.txt")
    size, root = parse_checkpoint(text, signer)
    statement, _ = open_note(files["manifest.sig"], keys, "manifest.sig")
    expected = FORMAT + "\n" + signer + "\n" + hashlib.sha256(files["manifest.json"]).hexdigest() + "\n"
    if statement != expected:
        raise Invalid("manifest.json does not match its signature (altered)",
                      "manifest.json không khớp chữ ký (đã bị sửa)")
    try:
        manifest = json.loads(files["manifest.json"].decode("utf-8"))
        declared = manifest["files"]
        count_declared = manifest["entries"]
    except (ValueError, KeyError, TypeError):
        raise Invalid("manifest.json is malformed", "manifest.json sai định dạng") from None
    names = ["entries.jsonl", "checkpoint.txt"]
    if "consistency.jsonl" in declared or "consistency.jsonl" in files:
        names.append("consistency.jsonl")
    for name in names:
        if name not in files:
            raise Invalid(name + " is missing but the signed manifest lists it",
                          name + " bị thiếu, dù manifest đã ký có ghi")
        if declared.get(name) != hashlib.sha256(files[name]).hexdigest():
            raise Invalid(name + " differs from the signed manifest (lines added, removed or changed)",
                          name + " khác với manifest đã ký (dòng bị thêm, bớt hoặc sửa)")
    if manifest.get("tree_size") != size:
        raise Invalid("manifest.json tree size differs from checkpoint.txt",
                      "kích thước cây trong manifest.json khác với checkpoint.txt")

    witnesses = [parse_witness_key(k) for k in witness_texts]
    cosigners = [count_cosigners(files["checkpoint.txt"].decode("utf-8"), text, witnesses)]
    cited = 0
    for number, line in enumerate(files.get("consistency.jsonl", b"").splitlines(), 1):
        where = f"consistency.jsonl line {number}"
        where_vi = f"consistency.jsonl dòng {number}"
        try:
            item = json.loads(line.decode("utf-8"))
            note = item["checkpoint"]
            proof = [b64decode(p) for p in item["consistency_proof"]]
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise Invalid(where + ": malformed", where_vi + ": sai định dạng") from None
        cited_text, _ = open_note(note.encode("utf-8"), keys, where)
        cited_size, cited_root = parse_checkpoint(cited_text, signer)
        try:
            check_consistency(cited_size, size, cited_root, root, proof)
        except Invalid as exc:
            raise Invalid(f"{where}: checkpoint of size {cited_size} is not extended by "
                          f"checkpoint.txt ({exc})",
                          f"{where_vi}: checkpoint kích thước {cited_size} không được checkpoint.txt "
                          f"kéo dài ({exc.vi or exc})") from None
        cosigners.append(count_cosigners(note, cited_text, witnesses))
        cited += 1
    needed = quorum or len(witnesses)
    if witnesses and max(cosigners) < needed:
        raise Invalid(f"no checkpoint in the bundle is cosigned by {needed} of the given "
                      "witnesses", f"không checkpoint nào trong gói được {needed} nhân chứng đã cho "
                      "cùng ký")

    previous, count = -1, 0
    for number, line in enumerate(files["entries.jsonl"].splitlines(), 1):
        where = f"entries.jsonl line {number}"
        where_vi = f"entries.jsonl dòng {number}"
        try:
            item = json.loads(line.decode("utf-8"))
            seq, body = item["seq"], item["body"].encode("utf-8")
            proof = [b64decode(p) for p in item["inclusion_proof"]]
            entry = json.loads(body.decode("utf-8"))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise Invalid(where + ": malformed", where_vi + ": sai định dạng") from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= previous:
            raise Invalid(where + ": entry numbers must increase", where_vi + ": số mục phải tăng dần")
        if not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS or entry["seq"] != seq:
            raise Invalid(f"{where}: the body is not entry {seq}", f"{where_vi}: nội dung không phải mục {seq}")
        if root_from_inclusion_proof(seq, size, leaf_hash(body), proof) != root:
            raise Invalid(f"{where}: entry {seq} is not in the signed log (altered)",
                          f"{where_vi}: mục {seq} không nằm trong nhật ký đã ký (đã bị sửa)")
        previous, count = seq, count + 1
    if count != count_declared:
        raise Invalid(f"entries.jsonl has {count} entries, the manifest says {count_declared}",
                      f"entries.jsonl có {count} mục, manifest ghi {count_declared}")
    return {"entries": count, "size": size, "origin": signer, "key": key_texts[0].strip(),
            "cited": cited, "cosigners": max(cosigners),
            "exported_at": manifest.get("exported_at"), "exported_by": manifest.get("exported_by")}


def local_time(text):
    """Return an exported_at time as Vietnam reads it: (Vietnamese, English) texts."""
    # Vietnam keeps UTC+7 all year: a fixed offset, so no time-zone database is needed
    # (Windows Python has none without the tzdata package).
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text), str(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)  # noqa: UP017 - datetime.UTC needs 3.11; this file runs on 3.9
    shown = moment.astimezone(VIETNAM).strftime("%d/%m/%Y %H:%M:%S")
    return shown + " (giờ Việt Nam)", shown + " (Vietnam time, UTC+7)"


def main(argv):
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # a console that cannot show Vietnamese
    args, keys, witnesses, quorum = [], [], [], None
    i = 1
    while i < len(argv):
        if argv[i] in ("--key", "--witness-key") and i + 1 < len(argv):
            value = argv[i + 1]
            if os.path.isfile(value):
                with open(value, encoding="utf-8") as fh:
                    value = fh.read().strip()
            (keys if argv[i] == "--key" else witnesses).append(value)
            i += 2
        elif argv[i] == "--quorum" and i + 1 < len(argv) and argv[i + 1].isdigit():
            quorum = int(argv[i + 1])
            i += 2
        elif argv[i] in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            args.append(argv[i])
            i += 1
    if len(args) != 1:
        print(__doc__)
        return 2
    try:
        summary = verify(args[0], keys, witnesses, quorum)
    except Invalid as exc:
        reason = (exc.vi + " / " if exc.vi else "") + str(exc)
        print("KHÔNG HỢP LỆ / INVALID: " + reason)
        return 1
    vi_at, en_at = local_time(summary["exported_at"])
    print(f"HỢP LỆ / VALID: {summary['entries']} mục có trong nhật ký đã ký {summary['origin']} "
          f"({summary['size']} mục); xuất lúc {vi_at} bởi {summary['exported_by']}")
    print(f"  {summary['entries']} entries proven in the signed log of {summary['size']} "
          f"entries; exported {en_at} by {summary['exported_by']}")
    if summary["cited"]:
        print(f"  {summary['cited']} checkpoint trước đó được chứng minh nhất quán / earlier "
              "checkpoint(s) proven consistent with checkpoint.txt")
    if witnesses:
        print(f"  Nhân chứng / witnesses: {summary['cosigners']} cosigned")
    if not keys:
        print("Khóa xác minh trong gói / verifier key in the bundle: " + summary["key"])
        print("  Hãy so sánh với khóa đã lưu trên giấy / compare it with the key kept on paper.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
