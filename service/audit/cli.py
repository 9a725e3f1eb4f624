"""`canhgac checkpoint`, `canhgac verify` and `canhgac export`."""

from __future__ import annotations

import base64
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from service.config import ConfigError
from service.core.cliutil import cli_actor, data_dir_option, make_app

VIETNAM = "Asia/Ho_Chi_Minh"

# Exit codes of `canhgac verify`: 0 VALID, 1 INVALID, 3 UNANCHORED (the entries agree with each
# other but no signed checkpoint covers any of them). Not 2: click uses 2 for usage errors.
EXIT_INVALID = 1
EXIT_UNANCHORED = 3


def _invalid(error: Exception) -> None:
    """Print the verdict, the reason in Vietnamese then English, and exit 1."""
    # As the bundle's verify_bundle.py says it: "KHÔNG HỢP LỆ / INVALID: <vi> / <en>".
    vi = getattr(error, "vi", None)
    click.echo(f"KHÔNG HỢP LỆ / INVALID: {vi + ' / ' if vi else ''}{error}", err=True)
    sys.exit(EXIT_INVALID)


def _zone() -> str:
    """Return the configured time zone for people (Asia/Ho_Chi_Minh unless set otherwise)."""
    from service.config import load_settings

    try:
        return load_settings().timezone
    except ConfigError:
        return VIETNAM


def local_time(value: datetime | str | None, zone: str) -> tuple[str, str]:
    """Return a UTC time as people read it: (Vietnamese, English) "dd/mm/yyyy HH:MM:SS (zone)"."""
    if value is None or value == "":
        return "?", "?"
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value), str(value)  # not a time: shown as written, never invented
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M:%S")
    if zone == VIETNAM:
        # As the bundle's own verify_bundle.py says it.
        return f"{text} (giờ Việt Nam)", f"{text} (Vietnam time, UTC+7)"
    return f"{text} ({zone})", f"{text} ({zone})"


def _key_values(values: tuple[str, ...]) -> list[str]:
    """Each --key is a verifier key, or a file holding one (e.g. the copy kept at init)."""
    keys = []
    for value in values:
        path = Path(value)
        keys.append(path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip())
    return keys


@click.command("checkpoint")
@data_dir_option
def checkpoint_command(data_dir) -> None:
    """Sign a checkpoint of the trail now and print the signed note (keep it: it is a witness)."""
    from service.audit.keys import KeyMissingError, load_verifier_key
    from service.audit.operations import sign_checkpoint
    from service.core.db import get_session

    app = make_app(data_dir)
    settings = app.config["SETTINGS"]
    with app.app_context():
        session = get_session()
        try:
            verifier = load_verifier_key(settings.keys_dir)
            cp = sign_checkpoint(session, settings)
        except KeyMissingError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        note = cp.note
    # The key goes to stderr so that `canhgac checkpoint > kept.txt` stores exactly the note.
    click.echo(f"Khóa xác minh / verifier key: {verifier}", err=True)
    click.echo(note, nl=False)


def _witness_keys(values: list[str]) -> list:
    """Parse --witness-key values (type 0x04 cosignature keys)."""
    from service.audit.checkpoint import KeyFormatError
    from service.audit.cosign import parse_cosigner_verifier

    try:
        return [parse_cosigner_verifier(value) for value in values]
    except KeyFormatError as exc:
        raise click.BadParameter(str(exc), param_hint="--witness-key") from None


def _cosigned_note(session, witnesses: list, quorum: int) -> tuple[str, str, int]:
    """Return the newest checkpoint cosigned by a quorum, as a kept note; INVALID when none."""
    from service.audit.cosign import CosignatureError
    from service.audit.witnessing import cosigned_anchor

    try:
        found = cosigned_anchor(session, witnesses, quorum)
    except CosignatureError as exc:
        _invalid(f"a stored cosignature does not verify: {exc}")
    if found is None:
        names = ", ".join(key.name for key in witnesses)
        _invalid(f"no stored checkpoint is cosigned by {quorum} of the witnesses ({names}): "
                 "the cosigned checkpoints were removed, or history was rewritten after them")
    cp, note = found
    return f"checkpoint #{cp.id} cosigned by the witnesses", note, cp.size


def _verify_bundle(bundle: str, keys: list[str], witnesses: list, quorum: int | None) -> None:
    from service.audit.bundle import BundleError, verify_bundle

    try:
        summary = verify_bundle(Path(bundle), keys=keys or None, witness_keys=witnesses,
                                quorum=quorum)
    except BundleError as exc:
        _invalid(exc)
    vi_at, en_at = local_time(summary.exported_at, _zone())
    click.echo(f"HỢP LỆ / VALID: {summary.entries} mục có trong nhật ký đã ký {summary.origin} "
               f"({summary.tree_size} mục); xuất lúc {vi_at} bởi {summary.exported_by}")
    click.echo(f"  {summary.entries} entries proven in the signed log of {summary.tree_size} "
               f"entries; exported {en_at} by {summary.exported_by}")
    if summary.is_key_from_bundle:
        click.echo(f"Khóa xác minh trong gói / verifier key in the bundle: {summary.verifier_key}\n"
                   "  Hãy so sánh với khóa đã lưu trên giấy / compare it with the key kept on paper")


@click.command("verify")
@data_dir_option
@click.option("--checkpoint", "kept", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Checkpoint đã ký giữ bên ngoài (tệp, hoặc thư đã lưu) / a signed checkpoint "
                   "kept outside the server; the log must extend it")
@click.option("--bundle", type=click.Path(exists=True, dir_okay=False),
              help="Kiểm tra gói bằng chứng (không cần cơ sở dữ liệu) / verify an evidence "
                   "bundle offline instead of the database")
@click.option("--key", "keys", multiple=True,
              help="Chỉ tin khóa xác minh này (chuỗi hoặc tệp) / trust only this verifier key "
                   "(text or file) instead of keys/checkpoint.pub")
@click.option("--deep", is_flag=True,
              help="Kiểm tra thêm từng mục và từng nút cây / also check every entry's columns "
                   "and every stored tree node row by row (slower)")
@click.option("--witness-key", "witness_keys", multiple=True,
              help="Khóa xác minh của nhân chứng (chuỗi hoặc tệp) / a witness's cosignature "
                   "verifier key (text or file): the trail must extend a checkpoint it cosigned")
@click.option("--quorum", type=click.IntRange(min=1), default=None,
              help="Số nhân chứng tối thiểu / how many of the --witness-key witnesses must have "
                   "cosigned (default: all of them)")
def verify_command(data_dir, kept, bundle, keys, deep, witness_keys, quorum) -> None:
    """Recompute the trail and check every checkpoint; exit non-zero at the first problem."""
    trusted = _key_values(keys)
    witnesses = _witness_keys(_key_values(witness_keys))
    if quorum is not None and quorum > len(witnesses):
        raise click.UsageError("--quorum is larger than the number of --witness-key")
    if bundle:
        _verify_bundle(bundle, trusted, witnesses, quorum)
        return
    from sqlalchemy.exc import SQLAlchemyError

    from service.audit.keys import KeyMissingError, load_verifier_key
    from service.audit.log import tree_size
    from service.audit.operations import latest_checkpoint
    from service.audit.verify import VerifyError, VerifyWorkerError, verify_log
    from service.audit.witnessing import last_cosigned_size
    from service.core.db import get_session, utcnow

    app = make_app(data_dir)
    settings = app.config["SETTINGS"]
    notes: list[tuple[str, str]] = [(f"kept checkpoint {p}", Path(p).read_text(encoding="utf-8"))
                                    for p in kept]
    try:
        trusted = trusted or [load_verifier_key(settings.keys_dir)]
    except KeyMissingError as exc:
        raise click.ClickException(str(exc)) from None
    with app.app_context():
        session = get_session()
        try:
            last = latest_checkpoint(session)
            last_signed_at = last.signed_at if last is not None else None
            cosigned_size = last_cosigned_size(session)
            if witnesses:
                label, note, cosigned_size = _cosigned_note(session, witnesses,
                                                            quorum or len(witnesses))
                notes.append((label, note))
            total = tree_size(session)
            options = {"origin": settings.audit_origin, "external_notes": notes, "deep": deep}
            if sys.stderr.isatty() and total:
                with click.progressbar(length=total, label="Kiểm tra / verifying",
                                       file=sys.stderr) as bar:
                    seen = [0]

                    def progress(done: int) -> None:
                        bar.update(done - seen[0])  # may step back when a second pass starts
                        seen[0] = done

                    report = verify_log(session, trusted, progress=progress, **options)
            else:
                report = verify_log(session, trusted, **options)
        except VerifyError as exc:
            session.rollback()
            _invalid(exc)
        except SQLAlchemyError as exc:
            session.rollback()
            raise click.ClickException(
                f"cannot read the audit trail ({type(exc).__name__}); was `canhgac init` run "
                "for this data directory?") from None
        except VerifyWorkerError as exc:
            session.rollback()
            raise click.ClickException(f"không kiểm tra được / could not verify: {exc}") from None
        session.rollback()  # verification writes nothing
    extends = (f"; kéo dài các checkpoint đã giữ / extends the kept checkpoint(s) of size "
               f"{', '.join(map(str, report.external))}" if report.external else "")
    summary = (f"{report.size} mục / entries, gốc / root {base64.b64encode(report.root).decode()}, "
               f"{report.checkpoints} checkpoint đã ký / signed checkpoints"
               f"{' (deep)' if report.is_deep else ''}{extends}")
    if not report.is_anchored:
        click.echo(
            f"KHÔNG CÓ CHECKPOINT / UNANCHORED: {summary}. Không checkpoint đã ký nào bao gồm "
            f"{report.size} mục này: chúng chỉ khớp với nhau, ai ghi lại CSDL và xoá checkpoint "
            "cũng để lại đúng như vậy; đối chiếu với checkpoint giữ bên ngoài (--checkpoint). / "
            f"No signed checkpoint covers any of these {report.size} entries: they only agree "
            "with each other, which is what a database rewrite that deletes the checkpoints "
            "leaves; check against a checkpoint kept outside (--checkpoint).", err=True)
        sys.exit(EXIT_UNANCHORED)
    click.echo(f"HỢP LỆ / VALID: {summary}")
    checked_vi, checked_en = local_time(utcnow(), settings.timezone)
    signed_vi, signed_en = local_time(last_signed_at, settings.timezone)
    click.echo(f"Kiểm tra lúc {checked_vi}; máy chủ ký checkpoint gần nhất lúc {signed_vi} / "
               f"checked at {checked_en}; the server last signed a checkpoint at {signed_en}")
    click.echo(
        f"{report.entries_past_last_checkpoint} mục sau checkpoint đã ký cuối cùng (kích thước "
        f"{report.last_signed_size}), chưa có chữ ký bao gồm / {report.entries_past_last_checkpoint} "
        f"entries past the last signed checkpoint (size {report.last_signed_size}), not yet "
        "covered by a signature")
    if cosigned_size is not None:
        click.echo(
            f"{report.size - cosigned_size} mục sau checkpoint có nhân chứng ký cuối cùng (kích "
            f"thước {cosigned_size}) / {report.size - cosigned_size} entries past the last "
            f"cosigned checkpoint (size {cosigned_size})")
    if witnesses:
        click.echo(f"Nhân chứng / witnesses: nhật ký kéo dài checkpoint được {quorum or len(witnesses)}"
                   f" nhân chứng ký / the trail extends a checkpoint cosigned by "
                   f"{quorum or len(witnesses)} of {len(witnesses)} witness(es)")
    if report.size and not report.checkpoints:
        click.echo("Cảnh báo: máy chủ không còn lưu checkpoint đã ký nào (chỉ có checkpoint giữ "
                   "bên ngoài) / warning: the server holds no signed checkpoint (only kept ones)",
                   err=True)



@click.command("export")
@data_dir_option
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Tệp gói (.zip); mặc định bang-chung-<xã>[-su-co-<số>]-<ngày>.zip trong thư mục "
                   "hiện tại / bundle file to write; by default named after the commune, the "
                   "incident and the date, in the current folder")
@click.option("--since", default=None,
              help="Từ (ISO, giờ Việt Nam nếu không ghi múi giờ) / from (ISO date/time, "
                   "Asia/Ho_Chi_Minh when no offset)")
@click.option("--until", default=None, help="Đến (không gồm) / until (exclusive)")
@click.option("--actor", default=None, help="Người thực hiện / actor")
@click.option("--host", default=None, help="Máy / host")
@click.option("--path", "path_contains", default=None,
              help="Đường dẫn chứa / path contains (case-insensitive)")
@click.option("--data-class", default=None, help="Loại dữ liệu / data class")
@click.option("--incident", "incident_id", type=int, default=None, help="Sự cố số / incident id")
@click.option("--action", default=None, help="Hành động / action")
@click.option("--kind", default=None, help="Loại mục / entry kind (event, user.created, …)")
def export_command(data_dir, output, **filters) -> None:
    """Write an evidence bundle (zip) of the matching entries with proofs and a checkpoint."""
    from service.audit.bundle import BundleError, bundle_filename, export_bundle
    from service.audit.keys import KeyMissingError
    from service.audit.search import SearchFilter
    from service.core.db import get_session, utcnow

    app = make_app(data_dir)
    with app.app_context():
        try:
            flt = SearchFilter.from_strings(app.config["SETTINGS"].timezone, **filters)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        output = output or Path(bundle_filename(app.config["SETTINGS"], flt.incident_id, utcnow()))
        session = get_session()
        try:
            count = export_bundle(session, app.config["SETTINGS"], flt, output, by=cli_actor())
        except (KeyMissingError, BundleError) as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"Đã xuất {count} mục vào / exported {count} entries to {output}")
