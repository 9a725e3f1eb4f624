"""Real-browser fixtures: Debian's Chromium driven by Playwright against `canhgac serve`.

The server is the real one (hypercorn, started as `canhgac serve` in a subprocess) on a
prepared SQLite data directory and a free 127.0.0.1 port; the test process writes the
scenario's rows (users, incidents) into the same database with the service's own models.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
PASSWORD = "mat-khau-trinh-duyet-1"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
VIEWS = [("vi", 1280), ("vi", 390), ("en", 1280), ("en", 390)]
PEOPLE = {"quan-tri": "admin", "lanh-dao": "leader", "cong-an": "police", "can-bo": "official"}


def ensure_chromium() -> Path:
    """Return Debian's Chromium, installing it with apt-get first if it is missing."""
    if not CHROMIUM.exists() and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env,
                       capture_output=True)
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing and could not be installed: run "
                    "`apt-get update && apt-get install -y chromium` (scripts/test.sh does)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _canhgac() -> list[str]:
    script = Path(sys.executable).with_name("canhgac")
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]


@dataclass
class Server:
    """A running `canhgac serve` and a way to write rows into its database."""

    base_url: str
    data_dir: Path
    app: object = field(repr=False)

    def session(self):
        """Return a new database session (the caller commits and closes)."""
        from service.core.db import new_session

        return new_session(self.app)

    def verifier_key(self) -> str:
        """Return the checkpoint verifier key as written by `canhgac init`."""
        return (self.data_dir / "keys" / "checkpoint.pub").read_text().strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """Initialize a data directory with `canhgac init`, then run `canhgac serve` on it."""
    root = tmp_path_factory.mktemp("browser")
    data_dir = root / "data"
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CANHGAC_") or k == "CANHGAC_TEST_DATABASES"}
    env.update(CANHGAC_SECRET_KEY="browser-test-secret", CANHGAC_SCHEDULER_ENABLED="false",
               CANHGAC_POLICY_RELOAD="false", CANHGAC_BASE_URL=base_url,
               CANHGAC_ADMIN_PASSWORD=PASSWORD)
    subprocess.run([*_canhgac(), "init", "--data-dir", str(data_dir), "--non-interactive",
                    "--admin", "quan-tri", "--admin-email", "quan-tri@nhanly.example"],
                   check=True, env=env, capture_output=True, timeout=120)
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen([*_canhgac(), "serve", "--data-dir", str(data_dir), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    app = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("canhgac serve did not start:\n"
                            + (root / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        from service import create_app
        from service.auth.operations import create_user
        from service.config import load_settings

        app = create_app(load_settings({"data_dir": data_dir, "secret_key": "browser-test-secret",
                                        "scheduler_enabled": False, "policy_reload": False,
                                        "base_url": base_url}, environ={}))
        srv = Server(base_url, data_dir, app)
        s = srv.session()
        for name, role in PEOPLE.items():
            if role != "admin":
                create_user(s, username=name, password=PASSWORD, roles=[role],
                            email=f"{name}@nhanly.example",
                            unit="cong_an" if role == "police" else "van_phong",
                            full_name=name.replace("-", " ").title(), is_seeding=True)
        s.commit()
        s.close()
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if app is not None:
            app.extensions["canhgac.engine"].dispose()


@pytest.fixture(scope="module")
def browser():
    """Launch Debian's Chromium once for the journeys (closed before other tests run)."""
    executable = ensure_chromium()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()


def _catalog() -> dict[str, str]:
    from babel.messages.pofile import read_po

    from service.web.i18n import po_path

    with po_path("en").open("rb") as fh:
        return {m.id: m.string for m in read_po(fh) if m.id and m.string}


class Journey:
    """One browser tab in one language at one width, with screenshots of every page visited."""

    _english: dict[str, str] | None = None

    def __init__(self, page, server: Server, lang: str, width: int, name: str) -> None:
        self.page = page
        self.server = server
        self.lang = lang
        self.width = width
        self.name = name
        self.steps = 0
        self.problems: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.problems.append(msg.text))
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))

    def t(self, msgid: str, **values) -> str:
        """Return what the interface shows for a Vietnamese source string in this language."""
        if self.lang == "en":
            if Journey._english is None:
                Journey._english = _catalog()
            msgid = Journey._english[msgid]
        return msgid % values if values else msgid

    def url(self, path: str) -> str:
        """Return an absolute URL on the server."""
        return self.server.base_url + path

    def shot(self, step: str) -> Path:
        """Save a full-page screenshot and check the page fits the screen width."""
        self.steps += 1
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{self.lang}-{self.width}-{self.steps:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        overflow = self.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if overflow > 1:
            self.problems.append(f"{step}: page is {overflow}px wider than the screen")
        return path

    def choose_language(self) -> None:
        """Switch the interface language with the header buttons, if not Vietnamese."""
        if self.lang == "en":
            self.page.get_by_role("button", name="English").click()
            self.page.wait_for_load_state()
        assert self.page.locator("html").get_attribute("lang") == self.lang

    def login(self, username: str, password: str = PASSWORD) -> None:
        """Log in through the login form, in the journey's language."""
        page = self.page
        page.goto(self.url("/login"))
        self.choose_language()
        page.get_by_label(self.t("Tên đăng nhập")).fill(username)
        page.get_by_label(self.t("Mật khẩu")).fill(password)
        self.shot("login")
        page.get_by_role("button", name=self.t("Đăng nhập"), exact=True).click()
        page.wait_for_load_state()
        assert "/login" not in page.url, f"login as {username} failed"

    def nav(self, label: str) -> None:
        """Follow a main-menu link by its (translated) label."""
        menu = self.page.get_by_role("navigation", name=self.t("Điều hướng chính"))
        menu.get_by_role("link", name=self.t(label), exact=True).click()
        self.page.wait_for_load_state()

    def check(self) -> None:
        """Fail on console errors (CSP violations show up there) or pages wider than the screen."""
        assert self.problems == []


@pytest.fixture(params=VIEWS, ids=[f"{lang}-{width}" for lang, width in VIEWS])
def journey(request, browser, server) -> Iterator[Journey]:
    """Open a fresh browser context in a language and at a width; check it at the end."""
    lang, width = request.param
    mobile = width < 600
    context = browser.new_context(
        viewport={"width": width, "height": 844 if mobile else 900}, is_mobile=mobile,
        has_touch=mobile, device_scale_factor=1, accept_downloads=True,
        timezone_id="Asia/Ho_Chi_Minh", locale="vi-VN" if lang == "vi" else "en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    name = request.node.originalname.removeprefix("test_")
    try:
        yield Journey(page, server, lang, width, name)
    finally:
        context.close()
