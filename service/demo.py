"""`canhgac demo`: the whole service on SQLite, a mail catcher, an agent, a month of activity, a leak."""

from __future__ import annotations

import random
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import click

from service.core.cliutil import data_dir_option

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


def _create_users(app) -> dict[str, str]:
    from sqlalchemy import select

    from service.auth.models import User
    from service.auth.operations import create_user
    from service.core.db import new_session

    passwords = {}
    with app.app_context():
        session = new_session(app)
        try:
            existing = set(session.scalars(select(User.username)))
            for username, roles, unit, full_name in DEMO_USERS:
                if username in existing:
                    continue
                password = "demo-" + secrets.token_urlsafe(6)
                create_user(session, username=username, password=password, roles=roles,
                            email=f"{username}@nhanly.demo", unit=unit, full_name=full_name,
                            by="demo", is_seeding=True)
                passwords[username] = password
            session.commit()
        finally:
            session.close()
    return passwords


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


def _count_incidents(app) -> int:
    from sqlalchemy import func, select

    from service.core.db import new_session
    from service.incidents.models import Incident

    with app.app_context():
        session = new_session(app)
        try:
            return session.scalar(select(func.count()).select_from(Incident).where(
                Incident.rule_id == "sao_chep_thiet_bi_di_dong")) or 0
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
@data_dir_option
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--exit-after-leak", is_flag=True, help="Stop once the leak became an incident (tests)")
def demo_command(data_dir, port, exit_after_leak) -> None:
    """Start a complete demo: service, mail catcher, agent, a month of activity and a leak."""
    from canhgac_agent.config import AgentConfig, EgressRoot, ProtectedRoot
    from canhgac_agent.runner import Agent
    from service import create_app
    from service.config import load_settings
    from service.core.bootstrap import prepare_data_dir
    from service.core.jobs import start_background, stop_background
    from service.core.server import Server

    data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="canhgac-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    catcher = MailCatcher(data_dir / "demo-mail")
    catcher.start()
    port = _free_port(port)
    settings = load_settings({
        "data_dir": data_dir, "smtp_host": "127.0.0.1", "smtp_port": catcher.port,
        "mail_from": "canhgac@nhanly.demo", "base_url": f"http://127.0.0.1:{port}",
        "scheduler_enabled": True, "log_level": "WARNING",
    })
    app = create_app(settings)
    click.echo(f"Thư mục dữ liệu demo / demo data directory: {data_dir}")
    verifier, _cert = prepare_data_dir(app)
    passwords = _create_users(app)
    click.echo("Đang tạo dữ liệu một tháng hoạt động / seeding a month of activity …")
    _ingest(app, month_of_events(datetime.now(UTC)), source="phan-mem-nghiep-vu")

    protected = data_dir / "demo" / "DuLieu" / "DanCu"
    usb = data_dir / "demo" / "USB"
    usb.mkdir(parents=True, exist_ok=True)
    leaked = protected / "danh_sach_cong_dan_thon_ban_chu.xlsx"
    if not leaked.exists():
        write_citizen_list(leaked)

    server = Server(app, "127.0.0.1", port, threads=8)
    server.start()
    start_background(app)

    agent = Agent(AgentConfig(
        server_url=f"http://127.0.0.1:{port}", token=_token(app), allow_insecure_http=True,
        agent_id="demo-pc-cong-an", host="PC-CONG_AN-01", unit="cong_an",
        spool_path=data_dir / "demo" / "agent-spool.db",
        protected_roots=[ProtectedRoot(path=protected, data_class="dan_cu")],
        egress_roots=[EgressRoot(path=usb, kind="removable")],
        include_default_egress=False, auto_detect_removable=False, heartbeat_seconds=30,
    # The simulated leak is copied by this very process, which the agent never attributes to
    # itself: the demo names the made-up official at that PC instead.
    ), watcher_options={"actor": "ca.nongthic"})
    agent.start()
    stopped = threading.Event()
    try:
        agent.wait_ready(timeout=60)
        click.echo("Mô phỏng lộ lọt: chép danh sách công dân ra USB / simulating a leak: "
                   "citizen list copied to the USB folder …")
        before = _count_incidents(app)
        shutil.copy2(leaked, usb / leaked.name)
        is_incident = _wait(lambda: _count_incidents(app) > before, 30)
        is_mailed = _wait(lambda: any("sự cố" in s.lower() or "Sự cố" in s for s in catcher.subjects()), 30)
        click.echo("")
        click.echo(f"Địa chỉ / URL:  http://127.0.0.1:{port}/")
        click.echo("Tài khoản demo / demo logins:")
        for username, roles, _unit, _name in DEMO_USERS:
            if username in passwords:
                click.echo(f"  {username:<8} {passwords[username]:<16} ({', '.join(roles)})")
        click.echo(f"Thư thông báo / notification mail: {catcher.folder} (.eml files, "
                   f"SMTP 127.0.0.1:{catcher.port})")
        click.echo(f"Khóa xác minh nhật ký / trail verifier key: {verifier}")
        click.echo("Sự cố đã được tạo / incident created: " + ("có / yes" if is_incident else "CHƯA / NOT YET"))
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
