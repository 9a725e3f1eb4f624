"""Agent configuration: TOML → validated model, with readable errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from canhgac_agent.config import AgentConfig, ConfigError, load_config, normalise_fingerprint

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "agent.example.toml"
PIN = "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_example_is_valid_and_sets_every_key():
    config = load_config(EXAMPLE)
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert config.server_url == "https://192.168.1.10:8443"
    assert config.pinned_sha256 == normalise_fingerprint(raw["pinned_sha256"])
    assert [r.data_class for r in config.protected_roots] == ["ho_ngheo", "ho_tich"]
    assert [r.kind for r in config.egress_roots] == ["messaging", "publishing"]
    assert config.token_file == EXAMPLE.parent / "agent-token.txt"
    # Every field of the model is mentioned in the example, set or commented out.
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in AgentConfig.model_fields:
        assert f"{name} =" in text or f"[{name}]" in text or f"[[{name}]]" in text, name


def test_minimal_file_gets_defaults(tmp_path):
    path = write(tmp_path, f'server_url = "https://10.0.0.5:8443"\ntoken = "t"\n'
                           f'pinned_sha256 = "{PIN}"\n')
    config = load_config(path)
    assert config.agent_id  # the host name
    assert config.auto_detect_removable is True
    assert config.batch_size == 500
    assert config.spool_path.name == "agent-spool.sqlite3"
    assert config.bearer_token() == "t"


def test_relative_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "secret").write_text("  tok-123\n", encoding="utf-8")
    path = write(tmp_path, f'''
server_url = "https://10.0.0.5"
token_file = "secret"
pinned_sha256 = "{PIN}"
spool_path = "state/spool.sqlite3"
[[protected_roots]]
path = "DuLieu"
[[egress_roots]]
path = "usb"
kind = "removable"
''')
    config = load_config(path)
    assert config.bearer_token() == "tok-123"
    assert config.spool_path == tmp_path / "state" / "spool.sqlite3"
    assert config.protected_roots[0].path == tmp_path / "DuLieu"
    assert config.egress_roots[0].path == tmp_path / "usb"


def test_pin_accepts_colons_and_case():
    colon = ":".join(["AB"] * 32)
    assert normalise_fingerprint(colon) == PIN
    assert normalise_fingerprint("SHA256:" + PIN.upper()) == PIN
    with pytest.raises(ValueError, match="64 hex"):
        normalise_fingerprint("abcd")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('server_url = "http://10.0.0.5"\ntoken = "t"\n', "allow_insecure_http"),
        ('server_url = "https://10.0.0.5"\ntoken = "t"\n', "pinned_sha256"),
        (f'server_url = "https://10.0.0.5"\npinned_sha256 = "{PIN}"\n', "token"),
        (f'server_url = "https://x"\ntoken = "t"\ntoken_file = "f"\npinned_sha256 = "{PIN}"\n',
         "not both"),
        (f'server_url = "ftp://x"\ntoken = "t"\npinned_sha256 = "{PIN}"\n', "server_url"),
        (f'server_url = "https://x"\ntoken = "t"\npinned_sha256 = "{PIN}"\nbatch_sise = 5\n',
         "batch_sise"),
        (f'server_url = "https://x"\ntoken = "t"\npinned_sha256 = "{PIN}"\n'
         '[[egress_roots]]\npath = "/x"\nkind = "usb"\n', "egress_roots.0.kind"),
        (f'server_url = "https://x"\ntoken = "t"\npinned_sha256 = "{PIN}"\n'
         '[[protected_roots]]\npath = "/x"\ndata_class = "Hộ nghèo"\n', "data_class"),
        ('server_url = "https://x"\ntoken = \n', "not valid TOML"),
    ],
)
def test_bad_files_give_readable_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_plain_http_allowed_only_when_asked(tmp_path):
    path = write(tmp_path, 'server_url = "http://127.0.0.1:8080"\ntoken = "t"\n'
                           'allow_insecure_http = true\n')
    config = load_config(path)
    assert config.is_loopback_server


def test_missing_token_file_is_a_clear_error(tmp_path):
    path = write(tmp_path, f'server_url = "https://x"\ntoken_file = "nope"\n'
                           f'pinned_sha256 = "{PIN}"\n')
    with pytest.raises(ConfigError, match="token_file"):
        load_config(path).bearer_token()


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_watch_fingerprint_changes_with_what_is_watched_only(tmp_path):
    from canhgac_agent.config import AgentConfig

    base = {"server_url": "http://127.0.0.1:8080", "allow_insecure_http": True, "token": "cg_x",
            "agent_id": "pc-1", "host": "PC-1",
            "protected_roots": [{"path": str(tmp_path / "DanCu"), "data_class": "dan_cu"},
                                {"path": str(tmp_path / "AnSinh")}]}
    fingerprint = AgentConfig.model_validate(base).watch_fingerprint()
    assert len(fingerprint) == 64
    # transport settings do not count
    same = AgentConfig.model_validate({**base, "batch_size": 10, "heartbeat_seconds": 5})
    assert same.watch_fingerprint() == fingerprint
    # every narrowing or widening does
    for change in (
        {"protected_roots": base["protected_roots"][:1]},
        {"ignore_patterns": ["*.xlsx"]},
        {"auto_detect_removable": False},
        {"include_default_egress": False},
        {"egress_roots": [{"path": str(tmp_path / "Zalo"), "kind": "messaging"}]},
        {"scan": {"max_bytes": 10}},
        {"removable_poll_seconds": 1e9},
        {"settle_seconds": 600},
        {"watch_opens": False},
        {"access_ignore_programs": ["/usr/bin/cat"]},
        {"access_window_seconds": 3600},
    ):
        assert AgentConfig.model_validate({**base, **change}).watch_fingerprint() != fingerprint, change
