"""No log line ever holds a 12-digit ID, a phone number, a password or a token."""

from __future__ import annotations

import json
import logging

import structlog
from hypothesis import given
from hypothesis import strategies as st

from service.core.logging import configure_logging, mask_identifiers, mask_text


def test_capture_logs_masks_identifiers():
    log = structlog.get_logger()
    with structlog.testing.capture_logs(processors=[mask_identifiers]) as logs:
        log.info("công dân 020185123456 gọi 0912 345 678", password="hunter2-secret",
                 extra={"token": "cg_abcdef", "note": "+84912345678"}, n=20185123456)
    entry = logs[0]
    text = json.dumps(entry, ensure_ascii=False)
    assert "020185123456" not in text
    assert "0912 345 678" not in text and "912345678" not in text
    assert "hunter2" not in text and "cg_abcdef" not in text
    assert "[cccd]" in entry["event"] and "[phone]" in entry["event"]


def test_dates_are_left_alone_but_longer_digit_runs_are_masked():
    # A 13-digit run holds a 12-digit one: it may be an ID number with a digit glued on.
    assert mask_text("mã 1234567890123 ngày 2026-11-25") == "mã [số] ngày 2026-11-25"
    assert mask_text("ngày 2026-11-25 lúc 10:30, 40 người") == "ngày 2026-11-25 lúc 10:30, 40 người"


def test_log_lines_mask_the_forms_the_old_patterns_missed():
    for raw in ("001-203-004-567", "001 203 004 567", "+84 (0) 912 345 678", "0\u200b912345678",
                "\uff10\uff19\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"):
        masked = mask_text(f"tệp {raw}.xlsx")
        assert masked.startswith("tệp [") and masked.endswith("].xlsx"), (raw, masked)


def test_bearer_and_assignments_are_masked():
    assert "abc.def" not in mask_text("Authorization: Bearer abc.def")
    assert "s3cret" not in mask_text("password=s3cret&x=1")


@given(st.from_regex(r"0[35789][0-9]{8}", fullmatch=True), st.text(max_size=20))
def test_any_mobile_number_is_masked(number, noise):
    assert number not in mask_text(f"{noise} {number} {noise}".replace(number, number)) or (
        number in noise
    )


def test_file_and_stderr_handlers_write_masked_json(tmp_path, capsys):
    configure_logging(tmp_path, "INFO")
    try:
        structlog.get_logger("t").info("id 001099012345 in line", phone="0987654321")
        logging.getLogger("stdlib").warning("stdlib 001099012345")
    finally:
        for handler in logging.getLogger().handlers:
            handler.flush()
    content = (tmp_path / "canhgac.log").read_text(encoding="utf-8")
    assert "001099012345" not in content and "0987654321" not in content
    lines = [json.loads(line) for line in content.splitlines()]
    assert any(line.get("event") == "id [cccd] in line" for line in lines)
    err = capsys.readouterr().err
    assert "001099012345" not in err
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_canhgac", False):
            root.removeHandler(handler)
            handler.close()


def test_client_addresses_stay_readable_but_numbers_beside_them_do_not():
    with structlog.testing.capture_logs(processors=[mask_identifiers]) as logs:
        structlog.get_logger().info("request", remote_addr="192.168.100.200",
                                    note="from 192.168.100.200", path="/x/001203004567")
    entry = logs[0]
    assert entry["remote_addr"] == "192.168.100.200"
    assert entry["note"] == "from [cccd]" and entry["path"] == "/x/[cccd]"
