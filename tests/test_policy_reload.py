"""Hot reload with a real watchdog observer on real files."""

from __future__ import annotations

import queue
import shutil
import time
from pathlib import Path

import pytest

from service.policy import Policy, default_policy_dir, load_policy
from service.policy.reload import PolicyWatcher, check_policy_dir

DEADLINE_SECONDS = 20


def copy_default(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(default_policy_dir(), target)
    return target


class Recorder:
    def __init__(self) -> None:
        self.outcomes: queue.Queue[tuple[str, object]] = queue.Queue()

    def loaded(self, policy: Policy) -> None:
        self.outcomes.put(("loaded", policy))

    def rejected(self, reason: str) -> None:
        self.outcomes.put(("rejected", reason))

    def next(self) -> tuple[str, object]:
        return self.outcomes.get(timeout=DEADLINE_SECONDS)

    def quiet_for(self, seconds: float) -> bool:
        try:
            self.outcomes.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def watched(tmp_path: Path):
    root = copy_default(tmp_path)
    recorder = Recorder()
    watcher = PolicyWatcher(root, recorder.loaded, recorder.rejected, debounce_seconds=0.2,
                            current=load_policy(root))
    watcher.start()
    yield root, watcher, recorder
    watcher.stop()


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_good_change_is_loaded(watched) -> None:
    root, watcher, recorder = watched
    before = watcher.policy.hash
    rewrite(root / "rules.yaml", "title: \"Xóa hàng loạt tệp dữ liệu cá nhân\"",
            "title: \"Xóa hàng loạt tệp chứa dữ liệu cá nhân\"")
    kind, policy = recorder.next()
    assert kind == "loaded"
    assert isinstance(policy, Policy) and policy.hash != before
    assert watcher.policy is policy
    assert policy.rule("xoa_hang_loat").title == "Xóa hàng loạt tệp chứa dữ liệu cá nhân"


def test_an_invalid_change_is_rejected_and_the_last_good_policy_stays(watched) -> None:
    root, watcher, recorder = watched
    good = watcher.policy
    rewrite(root / "scopes.yaml", "    kind: cloud\n", "    kind: sky\n")
    kind, reason = recorder.next()
    assert kind == "rejected"
    assert "scopes.yaml:" in str(reason) and "kind" in str(reason)
    assert watcher.policy is good


def test_a_change_failing_its_own_rule_tests_is_rejected(watched) -> None:
    root, watcher, recorder = watched
    good = watcher.policy
    rewrite(root / "rules.yaml", "{window_seconds: 600, min_events: 20}", "{window_seconds: 600, min_events: 21}")
    kind, reason = recorder.next()
    assert kind == "rejected" and "Xóa 20 hồ sơ" in str(reason)
    assert watcher.policy is good
    # fixing the test file as well makes the draft acceptable
    rewrite(root / "tests" / "hang_loat.yaml", "repeat: 19\n", "repeat: 20\n")
    rewrite(root / "tests" / "hang_loat.yaml", "repeat: 19\n", "repeat: 20\n")
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        kind, outcome = recorder.next()
        if kind == "loaded":
            break
    assert kind == "loaded" and watcher.policy is outcome and watcher.policy is not good


def test_a_burst_of_writes_is_debounced_into_one_reload(watched) -> None:
    root, _watcher, recorder = watched
    path = root / "units.yaml"
    for i in range(5):
        rewrite(path, "Phòng Kinh tế" if i == 0 else f"Phòng Kinh tế {i - 1}", f"Phòng Kinh tế {i}")
    kind, policy = recorder.next()
    assert kind == "loaded" and policy.units["kinh_te"].name == "Phòng Kinh tế 4"
    assert recorder.quiet_for(1.0)


def test_touching_without_change_reports_nothing(watched) -> None:
    root, _watcher, recorder = watched
    path = root / "rules.yaml"
    path.write_bytes(path.read_bytes())
    assert recorder.quiet_for(1.5)


def test_stop_cancels_and_start_needs_a_directory(tmp_path: Path) -> None:
    recorder = Recorder()
    with pytest.raises(FileNotFoundError):
        PolicyWatcher(tmp_path / "missing", recorder.loaded, recorder.rejected).start()
    root = copy_default(tmp_path)
    watcher = PolicyWatcher(root, recorder.loaded, recorder.rejected, debounce_seconds=0.3)
    watcher.start()
    rewrite(root / "units.yaml", "Phòng Kinh tế", "Phòng Kinh tế xã")
    watcher.stop()
    assert recorder.quiet_for(1.0)


def test_check_policy_dir_reports_reasons(tmp_path: Path) -> None:
    root = copy_default(tmp_path)
    assert check_policy_dir(root)[1] is None
    (root / "units.yaml").write_text("units: [{id: 1}]", encoding="utf-8")
    policy, reason = check_policy_dir(root)
    assert policy is None and "units.yaml:1" in reason
