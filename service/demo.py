"""`canhgac demo`: the whole service on SQLite, a mail catcher, an agent, a month of activity, a leak.

The story it tells: Xã Nhân Lý has used Canh Gác for a month; today Lê Thị D. of the culture and
social affairs unit (OS account ``vhxh.lethid``) copies the commune's list of poor households,
with ID and phone numbers, from /home/vhxh/AnSinh on her PC ``PC-VH_XH-01`` to a USB stick
nobody registered. The
agent on her PC reports it, an incident opens, leaders and police are mailed; the mail can be
read at /demo/mail.
"""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import click

DEMO_USERS = (
    ("admin", ["admin"], None, "Quản trị hệ thống"),
    ("lanhdao", ["leader"], "lanh_dao", "Nguyễn Văn Chủ tịch"),
    ("congan", ["police"], "cong_an", "Hoàng Văn Công an"),
    ("canbo", ["official"], "vh_xh", "Lê Thị Cán bộ"),
)
UNIT_FILES = {
    # unit -> (data class folder, files) on the officials' PCs
    "cong_an": ("C:\\DuLieu\\DanCu", ["thon_{}_nhan_khau.xlsx", "cu_tru_tam_tru_{}.xlsx"]),
    "van_phong": ("D:\\HoTich", ["khai_sinh_2026_{}.docx", "ket_hon_{}.xlsx"]),
    "vh_xh": ("/home/vhxh/AnSinh", ["chi_tra_thang_{}.csv", "ho_ngheo_thon_{}.xlsx"]),
    "kinh_te": ("/srv/dungchung/kinhte/DatDai", ["dat_o_thon_{}.xlsx"]),
    "tt_hcc": ("C:\\MotCua\\HoSo", ["ho_so_tthc_{}.pdf"]),
}
ACTORS = {
    "cong_an": ["ca.hoangvanb", "ca.nongthic"], "van_phong": ["vp.lythid", "vp.vivane"],
    "vh_xh": ["vhxh.lethid", "vhxh.hoangvang"], "kinh_te": ["kt.nongvanh"],
    "tt_hcc": ["hcc.luongthik", "hcc.tovanl"],
}
SURNAMES = ["Hoàng", "Nông", "Lương", "Vi", "Lý", "Tô", "Lăng", "Chu", "Hà", "Nguyễn"]
GIVEN = ["Văn An", "Thị Bình", "Văn Cường", "Thị Dung", "Văn Đức", "Thị Hoa", "Văn Hùng", "Thị Lan"]


# The official's PC the leak is staged on, and the folders of it the demo's files stand for.
LEAK_HOST = "PC-VH_XH-01"
LEAK_UNIT = "vh_xh"
LEAK_ACTOR = "vhxh.lethid"
# Like the unit's other PCs in the month of activity: Linux, the unit's files under /home/vhxh.
LEAK_FOLDER = "/home/vhxh/AnSinh"
LEAK_FILE = "DS_ho_ngheo_can_ngheo_thon_Ban_Chu_2026.xlsx"
LEAK_USB = "/media/vhxh.lethid/KINGSTON"
LEAK_PROGRAM = ("nautilus", 4312, "/usr/bin/nautilus")


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


class MailCatcher:
    """A local SMTP server that keeps every message as an .eml file."""

    def __init__(self, folder: Path) -> None:
        from aiosmtpd.controller import Controller

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        catcher = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                name = f"{time.time_ns()}-{secrets.token_hex(3)}.eml"
                (catcher.folder / name).write_bytes(envelope.content)
                return "250 OK"

        self.port = _free_port(2525)
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        """Start listening."""
        self.controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self.controller.stop()

    def subjects(self) -> list[str]:
        """Return the subjects of the messages received so far."""
        out = []
        for path in sorted(self.folder.glob("*.eml")):
            out.append(str(message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"]))
        return out


def citizen_rows(count: int, rng: random.Random) -> list[list]:
    """Return fake citizens of Xã Nhân Lý with made-up ID and phone numbers (demo data only)."""
    # Demo data must be the same on every run; nothing here is a secret.
    rows = []
    for i in range(count):
        year = rng.randint(1945, 2010)
        century_sex = (0 if year < 2000 else 2) + rng.randint(0, 1)
        cccd = f"020{century_sex}{year % 100:02d}{rng.randint(0, 999_999):06d}"
        phone = f"0{rng.choice([3, 8, 9])}{rng.randint(10_000_000, 99_999_999)}"
        name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
        rows.append([i + 1, name, cccd, f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{year}",
                     f"Thôn Bản {rng.randint(1, 22)}, xã Nhân Lý", phone])
    return rows


def write_citizen_list(path: Path, count: int = 200, seed: int = 6) -> None:
    """Write a citizen list spreadsheet (the file the demo leaks)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Danh sách"
    ws.append(["STT", "Họ và tên", "Số định danh cá nhân", "Ngày sinh", "Nơi cư trú", "Điện thoại"])
    for row in citizen_rows(count, random.Random(seed)):
        ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def month_of_events(now: datetime, seed: int = 2026) -> list[dict]:
    """Return a month of ordinary office activity with a few anomalies (JSON events)."""
    rng = random.Random(seed)
    events: list[dict] = []
    for day in range(30, 0, -1):
        date = (now - timedelta(days=day)).date()
        if date.weekday() >= 5:
            continue
        for unit, (folder, files) in UNIT_FILES.items():
            for _ in range(rng.randint(8, 20)):
                # 07:30–17:00 local time (UTC+7)
                minute = rng.randint(30, 600)
                at = datetime(date.year, date.month, date.day, tzinfo=UTC) + timedelta(minutes=minute)
                sep = "\\" if "\\" in folder else "/"
                path = folder + sep + rng.choice(files).format(rng.randint(1, 22))
                action = rng.choices(["open", "read", "modify", "print", "export", "copy"],
                                     [40, 30, 15, 6, 5, 4])[0]
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                # One agent per PC: the server ties an agent to the host of its first contact.
                host = f"PC-{unit.upper()}-0{rng.randint(1, 2)}"
                event = {
                    "id": event_id, "occurred_at": at.isoformat(), "host": host,
                    "actor": rng.choice(ACTORS[unit]), "action": action, "unit": unit,
                    "object": {"path": path, "record_count": rng.randint(1, 120)},
                    "purpose": "giải quyết hồ sơ", "agent_id": f"agent-{host.lower()}",
                }
                if action == "copy":
                    event["destination"] = {"path": f"S:\\DungChung\\{unit}\\{path.split(sep)[-1]}"}
                events.append(event)
    # A few anomalies the policy should flag.
    last = now - timedelta(days=3)
    events.append({
        "id": str(uuid.uuid4()), "occurred_at": last.replace(hour=7, minute=40).isoformat(),  # 14:40 in the commune
        "host": "PC-VH_XH-02", "actor": "vhxh.hoangvang", "action": "copy", "unit": "vh_xh",
        "object": {"path": "/home/vhxh/AnSinh/ho_ngheo_thon_7.xlsx", "record_count": 64},
        "destination": {"path": "/home/vhxh/Zalo Received Files/ho_ngheo.xlsx"},
        "pii": {"cccd": 64, "phone": 40},
    })
    events.append({
        "id": str(uuid.uuid4()), "occurred_at": (last - timedelta(days=2)).replace(hour=15).isoformat(),
        "host": "PC-CONG_AN-01", "actor": "ca.nongthic", "action": "open", "unit": "cong_an",
        "object": {"path": "C:\\DuLieu\\DanCu\\thon_3_nhan_khau.xlsx", "record_count": 300},
    })
    return sorted(events, key=lambda e: e["occurred_at"])


def _ingest(app, events: list[dict], source: str) -> None:
    from canhgac_common.events import Event
    from service.core.db import new_session
    from service.events.operations import ingest_events

    processor = app.extensions.get("canhgac.processor")
    with app.app_context():
        for start in range(0, len(events), 500):
            session = new_session(app)
            try:
                ingest_events(session, [Event.model_validate(e) for e in events[start : start + 500]],
                              source=source, processor=processor)
                session.commit()
            finally:
                session.close()


def _create_users(app) -> tuple[dict[str, str], bool]:
    """Create the demo accounts (or give existing ones new passwords); return them and whether new."""
    from sqlalchemy import select

    from service.auth.models import User
    from service.auth.operations import change_password, create_user
    from service.core.db import new_session

    passwords = {}
    with app.app_context():
        session = new_session(app)
        try:
            existing = {user.username: user for user in session.scalars(select(User))}
            for username, roles, unit, full_name in DEMO_USERS:
                # Printed once and never stored: a second run gives existing accounts new ones.
                password = "demo-" + secrets.token_urlsafe(6)
                if username in existing:
                    change_password(session, existing[username], password, by="demo")
                else:
                    create_user(session, username=username, password=password, roles=roles,
                                email=f"{username}@nhanly.demo", unit=unit, full_name=full_name,
                                by="demo", is_seeding=True)
                passwords[username] = password
            session.commit()
        finally:
            session.close()
    return passwords, not existing


def _echo_accounts(passwords: dict[str, str], url: str) -> None:
    click.echo(f"Địa chỉ / URL:  {url}/")
    click.echo("Tài khoản demo / demo logins (tên / user, mật khẩu / password):")
    for username, roles, _unit, full_name in DEMO_USERS:
        if username in passwords:
            click.echo(f"  {username:<8} {passwords[username]:<16} {full_name} ({', '.join(roles)})")


def _as_on_the_officials_pc(event, folders: dict[str, str]):
    """Return an agent event as the official's PC would report it: its paths, account, program."""
    from canhgac_common.events import Process

    def mapped(path: str | None) -> str | None:
        for real, shown in folders.items():
            if path is not None and (path == real or path.startswith(real + "/")):
                return shown + path[len(real):]
        return path

    update = {"actor": LEAK_ACTOR}
    if event.object is not None and event.object.path:
        update["object"] = event.object.model_copy(update={"path": mapped(event.object.path)})
    if event.destination is not None and event.destination.path:
        update["destination"] = event.destination.model_copy(
            update={"path": mapped(event.destination.path)})
    if event.action.value in {"copy", "move"}:
        name, pid, path = LEAK_PROGRAM
        update["process"] = Process(name=name, pid=pid, path=path)
    return event.model_copy(update=update)


def _token(app) -> str:
    from service.auth.operations import create_token
    from service.core.db import new_session

    with app.app_context():
        session = new_session(app)
        try:
            _, token = create_token(session, "demo-agent", by="demo")
            session.commit()
        finally:
            session.close()
    return token


def _last_leak_alert(app) -> tuple[int, int | None]:
    """Return the newest USB-copy alert's id (0 if none) and the incident it opened or joined."""
    from sqlalchemy import select

    from service.core.db import new_session
    from service.incidents.models import Alert

    with app.app_context():
        session = new_session(app)
        try:
            row = session.execute(select(Alert.id, Alert.incident_id).where(
                Alert.rule_id == "sao_chep_thiet_bi_di_dong").order_by(Alert.id.desc()).limit(1)).first()
            return (row[0], row[1]) if row else (0, None)
        finally:
            session.close()


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@click.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Thư mục dữ liệu của demo / the demo's data directory (mặc định / default: "
                   "CANHGAC_DATA_DIR, rồi / then ./audit_logs); không dùng thư mục của một cài "
                   "đặt thật / never a real installation's")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--exit-after-leak", is_flag=True, help="Stop once the leak became an incident (tests)")
def demo_command(data_dir, port, exit_after_leak) -> None:
    """Start a complete demo: service, mail catcher, agent, a month of activity and a leak.

    Its data goes where the service keeps it (./audit_logs, or --data-dir / CANHGAC_DATA_DIR),
    never into a real installation; later `canhgac` commands find it from any folder.
    """
    from canhgac_agent.config import AgentConfig, EgressRoot, ProtectedRoot
    from canhgac_agent.runner import Agent
    from service import create_app, demo_mailbox
    from service.config import ConfigError, load_settings
    from service.core.bootstrap import prepare_data_dir
    from service.core.cliutil import choose_data_dir, is_installed, leave_demo_pointer
    from service.core.heap import settle_heap
    from service.core.jobs import start_background, stop_background
    from service.core.server import Server

    try:
        choice = choose_data_dir(data_dir, use_demo_pointer=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    data_dir = choice.path
    stage = data_dir / "demo"  # what stands for the official's PC; also marks a demo's folder
    if is_installed(data_dir, choice.settings.database_url) and not stage.is_dir():
        raise click.ClickException(
            f"{data_dir} ({choice.source}) là một cài đặt thật, không phải demo / holds a real "
            "installation, not a demo: chọn thư mục khác / choose another folder with --data-dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    stage.mkdir(exist_ok=True)
    catcher = MailCatcher(data_dir / "demo-mail")
    catcher.start()
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    settings = load_settings({
        "data_dir": data_dir, "smtp_host": "127.0.0.1", "smtp_port": catcher.port,
        "mail_from": "canhgac@nhanly.demo", "base_url": url,
        "scheduler_enabled": True, "log_level": "WARNING",
    })
    app = create_app(settings)
    demo_mailbox.enable(app, catcher.folder)
    click.echo(f"Thư mục dữ liệu demo / demo data directory: {data_dir} ({choice.source})")
    verifier, _cert = prepare_data_dir(app)
    pointer = leave_demo_pointer(data_dir)
    click.echo(f"Các lệnh canhgac chạy ở thư mục khác cũng dùng thư mục này / other canhgac "
               f"commands use it from any folder (ghi trong / noted in {pointer})")
    passwords, is_new = _create_users(app)
    _echo_accounts(passwords, url)
    if is_new:
        click.echo("Đang tạo dữ liệu một tháng hoạt động / seeding a month of activity …")
        _ingest(app, month_of_events(datetime.now(UTC)), source="phan-mem-nghiep-vu")
    else:
        click.echo("Dữ liệu demo lần trước được giữ nguyên / the previous demo's data is kept")

    # The official's PC, as folders of the demo: the agent watches them, and its events name
    # the paths they stand for (the demo cannot write to /home/vhxh or mount a USB stick).
    pc = stage / LEAK_HOST
    protected = pc / "home-vhxh-AnSinh"
    usb = pc / "usb-KINGSTON"
    usb.mkdir(parents=True, exist_ok=True)
    leaked = protected / LEAK_FILE
    if not leaked.exists():
        write_citizen_list(leaked)
    # A second run copies it again beside the first copy, named as a file manager would.
    copied, number = usb / LEAK_FILE, 0
    while copied.exists():
        number += 1
        copied = usb / f"{Path(LEAK_FILE).stem} ({number}){Path(LEAK_FILE).suffix}"

    settle_heap()  # as `canhgac serve` does (service/core/heap.py)
    server = Server(app, "127.0.0.1", port, threads=8)
    server.start()
    start_background(app)

    agent = Agent(AgentConfig(
        server_url=url, token=_token(app), allow_insecure_http=True,
        # Its own id: the month of activity came from the unit's software under "agent-…" ids.
        agent_id=LEAK_HOST.lower(), host=LEAK_HOST, unit=LEAK_UNIT,
        spool_path=stage / "agent-spool.db",
        protected_roots=[ProtectedRoot(path=protected, data_class="an_sinh")],
        egress_roots=[EgressRoot(path=usb, kind="removable")],
        include_default_egress=False, auto_detect_removable=False, heartbeat_seconds=30,
    # The simulated leak is copied by this very process, which the agent never attributes to
    # itself: the demo names the made-up official at that PC instead.
    ), watcher_options={"actor": LEAK_ACTOR})
    folders = {str(protected.resolve()): LEAK_FOLDER, str(usb.resolve()): LEAK_USB}
    store = agent.spool.append  # the watcher shares this spool

    def append(events, *, also=()):
        return store([_as_on_the_officials_pc(e, folders) for e in events], also=also)

    agent.spool.append = append
    agent.start()
    stopped = threading.Event()
    try:
        agent.wait_ready(timeout=60)
        click.echo(f"Mô phỏng lộ lọt: {LEAK_ACTOR} chép {LEAK_FOLDER}/{LEAK_FILE} ra USB "
                   f"{LEAK_USB} trên máy {LEAK_HOST} / simulating a leak: an official copies a "
                   "list of poor households to an unregistered USB stick …")
        before, _ = _last_leak_alert(app)
        shutil.copyfile(leaked, copied)  # a fresh copy: new times, as a copy by hand has
        # A second run's copy joins the incident the first one opened (incident_join_hours).
        is_incident = _wait(lambda: _last_leak_alert(app)[0] > before
                            and _last_leak_alert(app)[1] is not None, 30)
        incident_id = _last_leak_alert(app)[1] if is_incident else None
        is_mailed = _wait(lambda: any("sự cố" in s.lower() or "Sự cố" in s for s in catcher.subjects()), 30)
        click.echo("")
        _echo_accounts(passwords, url)
        click.echo(f"Hộp thư demo / demo mailbox: {url}/demo/mail  (tệp .eml / files: "
                   f"{catcher.folder}, SMTP 127.0.0.1:{catcher.port})")
        click.echo(f"Khóa xác minh nhật ký / trail verifier key: {verifier}")
        click.echo("Sự cố đã được tạo / incident created: " + (
            f"có / yes: {url}/incidents/{incident_id}" if is_incident else "CHƯA / NOT YET"))
        click.echo("Thư đã gửi / mail delivered: " + ("có / yes" if is_mailed else "CHƯA / NOT YET"))
        if exit_after_leak:
            if not (is_incident and is_mailed):
                raise click.ClickException("the simulated leak did not become a notified incident")
            return
        click.echo("Nhấn Ctrl-C để dừng / press Ctrl-C to stop.")
        stopped.wait()
    except KeyboardInterrupt:
        click.echo("\nĐang dừng / stopping …")
    finally:
        agent.stop()
        stop_background(app)
        server.stop()
        catcher.stop()
        app.extensions["canhgac.engine"].dispose()
