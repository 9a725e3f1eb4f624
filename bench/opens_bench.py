"""Benchmark the agent's open/read monitoring: bursts absorbed, CPU and memory, open → server.

Targets (issue #13): bursts of 5,000 opens/s with none lost, ≤ 80 MB RSS while watching 100,000
files; open → event at the server p99 ≤ 100 ms.

- ``opens_absorbed(n_files, burst)`` runs the agent in a child process over *n_files* protected
  files (fanotify when this runs as root). Another process then opens *burst* distinct files
  (open, read one byte, close) as fast as it can — several thousand a second. The figures: opens
  offered per second, events that reached a local HTTP server (none may be lost), the agent's
  CPU seconds for the burst and its RSS. The baseline, measured in the same run on the same
  files: a bare fanotify reader (the kernel interface and a read loop, nothing else) absorbing
  the same burst; the agent's CPU is reported as a ratio to it.
- ``open_latency(repeats)`` opens one protected file at a time and measures open → event at the
  server, beside open → seen by the bare fanotify reader (the kernel floor).

Root is needed for fanotify; without it the figures say ``mode: inotify`` and the baseline is
skipped. No timed asserts: the functions return figures.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.agent_bench import _base_config, _make_small_files, _Receiver
from bench.stats import percentile

_CAT = shutil.which("cat") or "/bin/cat"

_AGENT_CHILD = r"""
import json, sys, threading, time
from canhgac_agent.config import AgentConfig
from canhgac_agent.runner import Agent

config = AgentConfig.model_validate(json.loads(sys.argv[1]))
agent = Agent(config)
agent.start()
agent.wait_ready()
mode = getattr(agent.watcher, "access_mode", "unknown")
print(json.dumps({"ready": True, "mode": mode}), flush=True)
sys.stdin.readline()  # the parent says when to stop
agent.stop()
"""

_OPENER = r"""
import os, sys, time, json
paths = sys.argv[1:]
started = time.perf_counter()
for path in paths:
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 1)
    os.close(fd)
print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
"""

# A bare fanotify reader: the kernel interface and a read loop, nothing else (the baseline).
_BARE_READER = r"""
import ctypes, json, os, select, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
FAN_CLASS_NOTIF, FAN_CLOEXEC, FAN_MARK_ADD = 0x0, 0x1, 0x1
FAN_OPEN, FAN_ACCESS, FAN_EVENT_ON_CHILD = 0x20, 0x1, 0x08000000
fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, os.O_RDONLY)
if fd < 0:
    print(json.dumps({"error": os.strerror(ctypes.get_errno())}), flush=True); sys.exit(0)
root, expected = sys.argv[1], int(sys.argv[2])
for folder, _dirs, _files in os.walk(root):
    if libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN | FAN_ACCESS | FAN_EVENT_ON_CHILD,
                          -100, folder.encode()) < 0:
        print(json.dumps({"error": "mark"}), flush=True); sys.exit(0)
print(json.dumps({"ready": True}), flush=True)
seen, first, stamps = set(), None, []
cpu0 = time.process_time()
while len(seen) < expected:
    r, _, _ = select.select([fd], [], [], 30)
    if not r:
        break
    data = os.read(fd, 65536)
    now = time.perf_counter()
    offset = 0
    while offset < len(data):
        length, _v, _r, _m, mask, efd, pid = struct.unpack_from("=IBBHQii", data, offset)
        if efd >= 0:
            name = os.readlink(f"/proc/self/fd/{efd}")
            os.close(efd)
            if mask & FAN_OPEN and name not in seen:
                seen.add(name)
                stamps.append((name, now))
        offset += length
print(json.dumps({"seen": len(seen), "cpu_seconds": time.process_time() - cpu0,
                  "stamps": stamps}), flush=True)
"""


class _OpenReceiver(_Receiver):
    """The local event server, noting open/read events by the object's path."""

    def note(self, event: dict, now: float) -> None:
        """Record when the first open/read event of each file arrived."""
        if event.get("action") in ("open", "read"):
            self.arrived.setdefault((event.get("object") or {}).get("path", ""), now)

    def wait_count(self, paths: list[str], timeout: float) -> int:
        """Wait until an event of every path arrived; return how many did."""
        deadline = time.monotonic() + timeout
        wanted = set(paths)
        with self.cond:
            while True:
                have = len(wanted & self.arrived.keys())
                left = deadline - time.monotonic()
                if have == len(wanted) or left <= 0:
                    return have
                self.cond.wait(min(left, 0.5))


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _proc_memory_mb(pid: int) -> dict:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS"), "peak_rss_mb": values.get("VmHWM")}


def _start_agent(config: dict) -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen([sys.executable, "-c", _AGENT_CHILD, json.dumps(config)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    return child, json.loads(line)


def _stop(child: subprocess.Popen) -> None:
    try:
        child.stdin.write("stop\n")
        child.stdin.flush()
        child.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        child.kill()


def _open_all(paths: list[str]) -> float:
    completed = subprocess.run([sys.executable, "-c", _OPENER, *paths], capture_output=True,
                               text=True, check=True, timeout=600)
    return json.loads(completed.stdout)["seconds"]


def _bare_burst(folder: Path, paths: list[str]) -> dict | None:
    reader = subprocess.Popen([sys.executable, "-c", _BARE_READER, str(folder), str(len(paths))],
                              stdout=subprocess.PIPE, text=True)
    first = json.loads(reader.stdout.readline())
    if not first.get("ready"):
        reader.wait()
        return None
    _open_all(paths)
    result = json.loads(reader.stdout.readline())
    reader.wait(timeout=60)
    return result


def opens_absorbed(n_files: int = 100_000, burst: int = 5_000) -> dict:
    """Return opens offered/s, events received, lost, agent CPU and RSS, and the bare baseline."""
    receiver = _OpenReceiver()
    with tempfile.TemporaryDirectory(prefix="canhgac-opens-bench-") as tmp:
        root = Path(tmp)
        (root / "usb").mkdir()
        _make_small_files(root / "protected", n_files)
        every = max(n_files // burst, 1)
        targets = sorted(str(p) for p in (root / "protected").rglob("*.txt"))[::every][:burst]
        baseline = _bare_burst(root / "protected", targets) if os.geteuid() == 0 else None
        config = _base_config(root, receiver.url, batch_size=1000)
        child, hello = _start_agent(config)
        try:
            time.sleep(1.0)  # let start-up work settle before the CPU reading
            memory_ready = _proc_memory_mb(child.pid)
            cpu_before = _proc_cpu_seconds(child.pid)
            started = time.perf_counter()
            open_seconds = _open_all(targets)
            received = receiver.wait_count(targets, timeout=120)
            absorbed_seconds = time.perf_counter() - started
            cpu = _proc_cpu_seconds(child.pid) - cpu_before
            memory_after = _proc_memory_mb(child.pid)
        finally:
            _stop(child)
    receiver.close()
    figures = {
        "mode": hello.get("mode"),
        "n_files": n_files,
        "burst": len(targets),
        "opens_per_second_offered": round(len(targets) / open_seconds),
        "events_received": received,
        "lost": len(targets) - received,
        "seconds_to_last_event_at_server": round(absorbed_seconds, 2),
        "agent_cpu_seconds": round(cpu, 3),
        "agent_cpu_us_per_open": round(1e6 * cpu / len(targets), 1),
        "rss_mb_ready": memory_ready["rss_mb"],
        **memory_after,
        "target_rss_mb": 80,
    }
    if baseline and "cpu_seconds" in baseline:
        figures["bare_fanotify_cpu_seconds"] = round(baseline["cpu_seconds"], 3)
        figures["bare_fanotify_seen"] = baseline["seen"]
        if baseline["cpu_seconds"] > 0:
            figures["agent_cpu_vs_bare_fanotify"] = round(cpu / baseline["cpu_seconds"], 1)
    return figures


def open_latency(repeats: int = 200, n_files: int = 1_000) -> dict:
    """Return p50/p99 of open → event at the server, beside open → bare fanotify reader."""
    receiver = _OpenReceiver()
    with tempfile.TemporaryDirectory(prefix="canhgac-open-latency-") as tmp:
        root = Path(tmp)
        (root / "usb").mkdir()
        _make_small_files(root / "protected", n_files)
        targets = sorted(str(p) for p in (root / "protected").rglob("*.txt"))[:repeats]
        floor_ms: list[float] = []
        if os.geteuid() == 0:
            reader = subprocess.Popen(
                [sys.executable, "-c", _BARE_READER, str(root / "protected"), str(len(targets))],
                stdout=subprocess.PIPE, text=True)
            if json.loads(reader.stdout.readline()).get("ready"):
                opened_at = {}
                for path in targets:
                    opened_at[path] = time.perf_counter()
                    with open(path, "rb") as handle:
                        handle.read(1)
                    time.sleep(0.005)
                result = json.loads(reader.stdout.readline())
                floor_ms = [(at - opened_at[name]) * 1000 for name, at in result["stamps"]
                            if name in opened_at]
            reader.wait(timeout=60)
        child, hello = _start_agent(_base_config(root, receiver.url))
        agent_ms: list[float] = []
        missed = 0
        try:
            time.sleep(1.0)
            for path in targets:
                opened_at = time.perf_counter()
                # Another process opens, as an official's program would.
                subprocess.run([_CAT, path], stdout=subprocess.DEVNULL, check=True)
                if receiver.wait_count([path], timeout=30) != 1:
                    missed += 1
                    continue
                agent_ms.append((receiver.arrived[path] - opened_at) * 1000)
        finally:
            _stop(child)
    receiver.close()
    return {
        "mode": hello.get("mode"),
        "n": len(agent_ms),
        "missed": missed,
        "agent_p50_ms": round(statistics.median(agent_ms), 2) if agent_ms else None,
        "agent_p99_ms": round(percentile(agent_ms, 0.99), 2) if agent_ms else None,
        "bare_fanotify_p50_ms": round(statistics.median(floor_ms), 3) if floor_ms else None,
        "bare_fanotify_p99_ms": round(percentile(floor_ms, 0.99), 3) if floor_ms else None,
        "target_p99_ms": 100,
    }


if __name__ == "__main__":
    print(json.dumps({"open_latency": open_latency(repeats=50)}, indent=2))
    print(json.dumps({"opens_absorbed": opens_absorbed()}, indent=2))
