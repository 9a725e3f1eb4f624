"""docs/police-guide.md, run as written after `canhgac demo`.

The demo runs as a person starts it (`canhgac demo` in a fresh folder, no options, no CANHGAC_*
variables) and keeps running; the police work in their own folder, as the guide says: the key
from paper in khoa.txt (typed from what the demo printed), their own copy of verify_bundle.py,
an incident mail saved from the demo's mailbox page. Then every command of the guide's `sh`
blocks runs through a shell, in order, exactly as written; so does the guide's Python script.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "police-guide.md"
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[a-z]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)

# The guide's commands, in order. Kept here as well as parsed, so that a command dropped from the
# guide (or one added) is a decision this test is told about.
EXPECTED = [
    "canhgac incident list",
    "canhgac incident show 1",
    "canhgac export --incident 1",
    "canhgac export -o bang-chung-vhxh-lethid.zip --actor vhxh.lethid --host PC-VH_XH-01",
    "canhgac export -o tat-ca.zip                       # toàn bộ nhật ký / the whole trail",
    "python verify_bundle.py bang-chung-vhxh-lethid.zip --key khoa.txt",
    "canhgac verify --bundle bang-chung-vhxh-lethid.zip --key khoa.txt",
    "sha256sum verify_bundle.py",
    "canhgac checkpoint > cp-2026-12-07.txt",
    "python -m zipfile -e tat-ca.zip bang-chung",
    "canhgac verify --key khoa.txt --checkpoint cp-2026-12-07.txt --checkpoint thu-su-co.eml "
    "--checkpoint bang-chung/checkpoint.txt",
    "canhgac backup -o sao-luu.zip",
    "canhgac restore sao-luu.zip --data-dir kiem-tra",
    "canhgac verify --data-dir kiem-tra --key khoa.txt --checkpoint cp-2026-12-07.txt",
    "canhgac report monthly",
]


def guide_blocks(lang: str) -> list[str]:
    """Return the bodies of the guide's fenced blocks in a language, unindented."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match.group("lang") == lang:
            indent = len(match.group("indent"))
            blocks.append("".join(line[indent:] for line in match.group("body").splitlines(True)))
    return blocks


def guide_commands() -> list[str]:
    """Return every command line of the guide's `sh` blocks, in order."""
    return [line.strip() for block in guide_blocks("sh") for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_the_guide_lists_exactly_the_commands_this_test_runs():
    assert guide_commands() == EXPECTED
    # A `canhgac …` named in the text is part of one of them (its words, in order): no command
    # in the prose drifts away from what is run.
    text = GUIDE.read_text(encoding="utf-8")
    inline = set(re.findall(r"`(canhgac [^`]+)`", text))
    assert inline, "the guide names canhgac commands in its text"
    for command in inline:
        assert any(_words_within(command.rstrip(" …").split(), c.split())
                   for c in [*EXPECTED, "canhgac demo"]), command  # the demo: this test starts it


def _words_within(words: list[str], line: list[str]) -> bool:
    rest = iter(line)
    return all(word in rest for word in words)


class Web:
    """A person's browser on the demo: cookies, the login form, pages and downloads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[int, str, bytes]:
        with self.opener.open(self.url + path, timeout=30) as response:
            return response.status, response.headers.get("Content-Disposition", ""), response.read()

    def login(self, username: str, password: str) -> None:
        _, _, page = self.get("/login")
        token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page).group(1).decode()
        data = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrf_token": token}).encode()
        with self.opener.open(self.url + "/login", data=data, timeout=30) as response:
            assert response.status == 200
        status, _, page = self.get("/incidents/")
        assert status == 200 and "Đăng xuất".encode() in page, "logged in"


def _start_demo(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    demo = subprocess.Popen(  # exactly `canhgac demo`, run where the README says
        [str(Path(sys.executable).with_name("canhgac")), "demo"], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Nhấn Ctrl-C"):
            return demo, lines
    demo.kill()
    demo.wait()
    demo.stdout.close()
    pytest.fail("the demo did not come up:\n" + "\n".join(lines))


def _stop(demo: subprocess.Popen) -> None:
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as the demo asks
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    demo.stdout.close()


@pytest.mark.heavy
def test_every_command_of_the_police_guide_works_after_the_demo(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANHGAC_")}
    env.update(PATH=bin_dir + os.pathsep + env.get("PATH", ""), XDG_STATE_HOME=str(tmp_path / "state"),
               PYTHONIOENCODING="utf-8")
    server_folder = tmp_path / "may-chu"
    server_folder.mkdir()
    demo, printed = _start_demo(server_folder, env)
    try:
        output = "\n".join(printed)
        # The demo said where its data is (where README says), and every account with its password.
        data_dir = server_folder / "audit_logs"
        assert f"demo data directory: {data_dir}" in output
        assert (data_dir / "canhgac.db").is_file()
        passwords = dict(re.findall(r"^  (admin|lanhdao|congan|canbo)\s+(demo-\S+)", output, re.M))
        assert set(passwords) == {"admin", "lanhdao", "congan", "canbo"}
        url = re.search(r"^Địa chỉ / URL:\s+(http://\S+)/$", output, re.M).group(1)
        key = re.search(r"trail verifier key: (\S+)$", output, re.M).group(1)
        assert "incident created: có / yes" in output

        # The police's own folder: the key typed from paper, their copy of the checker.
        police = tmp_path / "cong-an"
        police.mkdir()
        (police / "khoa.txt").write_text(key + "\n", encoding="utf-8")
        shutil.copy(resources.files("service.audit").joinpath("bundle_files", "verify_bundle.py"),
                    police / "verify_bundle.py")

        # The incident mail, read on the demo's mailbox page and saved as .eml from there.
        web = Web(url)
        web.login("congan", passwords["congan"])
        status, _, page = web.get("/demo/mail/")
        assert status == 200
        names = re.findall(rb'href="/demo/mail/([0-9]+-[0-9a-f]{6}\.eml)"', page)
        subjects = page.decode()
        assert names and "Sự cố" in subjects
        incident_mail = None
        for name in names:
            _, _, message_page = web.get(f"/demo/mail/{name.decode()}")
            text = message_page.decode()
            if "/incidents/1" in text and "canhgac.nhanly.langson/audit" in text:
                incident_mail = name.decode()
                break
        assert incident_mail, "an incident mail with its checkpoint is readable in the browser"
        _, disposition, raw = web.get(f"/demo/mail/{incident_mail}/eml")
        assert "attachment" in disposition
        (police / "thu-su-co.eml").write_bytes(raw)

        # Every command of the guide, in order, through a shell, from the police's folder.
        results = {}
        for command in guide_commands():
            run = subprocess.run(command, shell=True, cwd=police, env=env, capture_output=True,  # noqa: S602 - the guide's lines are shell lines, run as written
                                 text=True, timeout=300, check=False)
            assert run.returncode == 0, f"{command}\n{run.stdout}\n{run.stderr}"
            results[command] = run
            if command.startswith("canhgac "):
                # Found the demo's data from another folder, and said so.
                where = police / "kiem-tra" if "--data-dir kiem-tra" in command else data_dir
                if not command.startswith(("canhgac restore", "canhgac verify --bundle")):
                    assert f"data directory: {where}" in run.stderr, command
        # What the commands made is what the guide says they make.
        assert "Sao chép dữ liệu cá nhân ra thiết bị" in results["canhgac incident list"].stdout
        named = list(police.glob("bang-chung-xa-nhan-ly-su-co-1-20??-??-??.zip"))
        assert len(named) == 1, "the incident's bundle is named after the commune, incident and date"
        for bundle in (*named, police / "bang-chung-vhxh-lethid.zip", police / "tat-ca.zip"):
            with zipfile.ZipFile(bundle) as z:
                assert z.read("entries.jsonl").count(b"\n") > 0, bundle
        checker = results["python verify_bundle.py bang-chung-vhxh-lethid.zip --key khoa.txt"].stdout
        assert checker.startswith("HỢP LỆ / VALID: ")
        assert re.search(r"xuất lúc \d\d/\d\d/20\d\d \d\d:\d\d:\d\d \(giờ Việt Nam\) bởi cli:", checker)
        # The output the guide shows is the output one gets (numbers, times and who aside).
        (shown,) = guide_blocks("text")
        pattern = re.sub(r"\d+", r"\\d+", re.escape(shown)).replace("cli:congan", r"cli:\S+")
        assert re.fullmatch(pattern, checker), (shown, checker)
        installed = results["canhgac verify --bundle bang-chung-vhxh-lethid.zip --key khoa.txt"].stdout
        assert installed.splitlines()[:2] == checker.splitlines()[:2]  # the two checkers agree
        expected_sum = hashlib.sha256((police / "verify_bundle.py").read_bytes()).hexdigest()
        assert results["sha256sum verify_bundle.py"].stdout.startswith(expected_sum)
        kept = next(c for c in EXPECTED if "--checkpoint thu-su-co.eml" in c)
        assert results[kept].stdout.startswith("HỢP LỆ / VALID: ")
        assert "kéo dài các checkpoint đã giữ" in results[kept].stdout
        assert (police / "kiem-tra" / "canhgac.db").is_file()
        assert list(police.glob("bao-cao-20??-??.pdf"))

        # The guide's Python script, on an inclusion proof downloaded from the entry's page.
        (script,) = guide_blocks("python")
        (police / "kiem_tra_muc.py").write_text(script, encoding="utf-8")
        _, disposition, proof = web.get("/audit/entries/4/proof.json")
        assert disposition.endswith("filename=entry-4-proof.json")  # the name the guide uses
        (police / "entry-4-proof.json").write_bytes(proof)
        assert json.loads(proof)["entry"]["seq"] == 4
        run_line = re.search(r"^# kiem_tra_muc\.py — (python .+)$", script, re.M).group(1)
        run = subprocess.run(run_line, shell=True, cwd=police, env={**env, "PYTHONPATH": str(GUIDE.parents[1])},  # noqa: S602 - as the script's first line says to run it
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("HỢP LỆ / VALID: mục 4 nằm trong nhật ký đã ký")
    finally:
        _stop(demo)
