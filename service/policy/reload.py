"""Hot reload: watch a policy directory, and swap in a new policy only if it loads AND passes.

A change under the directory (any file, any depth) is debounced, then the whole directory is
loaded, validated and its own rule tests run. A policy that fails is reported through
``on_rejected(reason)`` and the last good one stays in force; a good one is handed to
``on_loaded(policy)``. A reload that yields the same policy hash as the one in force is
not reported again (editors touch files without changing them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from service.policy.engine import Policy, run_policy_tests
from service.policy.loader import load_policy
from service.policy.schemas import PolicyError

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_SECONDS = 0.5
MAX_REASON_LINES = 50


def check_policy_dir(directory: str | Path) -> tuple[Policy | None, str | None]:
    """Load a directory and run its rule tests; return (policy, None) or (None, reason)."""
    try:
        policy = load_policy(directory)
    except PolicyError as exc:
        return None, _reason("chính sách không hợp lệ / invalid policy", [str(p) for p in exc.problems])
    except OSError as exc:  # the directory vanished or became unreadable mid-edit
        return None, f"không đọc được chính sách / cannot read policy: {exc}"
    failures = run_policy_tests(policy)
    if failures:
        return None, _reason("bài kiểm thử quy tắc thất bại / rule tests failed", [str(f) for f in failures])
    return policy, None


def _reason(title: str, lines: list[str]) -> str:
    shown = lines[:MAX_REASON_LINES]
    more = len(lines) - len(shown)
    tail = [f"... {more} more"] if more > 0 else []
    return "\n".join([f"{title} ({len(lines)})", *shown, *tail])


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: PolicyWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (including our own loads) are not changes
        self._watcher.poke()


class PolicyWatcher:
    """Watch ``directory`` and reload the policy after changes settle for ``debounce_seconds``."""

    def __init__(
        self,
        directory: str | Path,
        on_loaded: Callable[[Policy], None],
        on_rejected: Callable[[str], None],
        *,
        debounce_seconds: float = DEFAULT_DEBOUNCE_SECONDS,
        current: Policy | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.debounce_seconds = debounce_seconds
        self._on_loaded = on_loaded
        self._on_rejected = on_rejected
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._policy = current
        self._stopped = False

    @property
    def policy(self) -> Policy | None:
        """Return the last good policy (None until one was loaded)."""
        return self._policy

    def start(self) -> None:
        """Start watching; raises if the directory does not exist."""
        if not self.directory.is_dir():
            raise FileNotFoundError(self.directory)
        observer = Observer()
        observer.schedule(_Handler(self), str(self.directory), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._stopped = False

    def stop(self) -> None:
        """Stop watching and cancel a pending reload; waits for the observer thread."""
        with self._lock:
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)

    def poke(self) -> None:
        """Note a change: (re)start the debounce timer."""
        with self._lock:
            if self._stopped:
                return
            if self._timer is not None:
                self._timer.cancel()
            timer = threading.Timer(self.debounce_seconds, self.reload)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def reload(self) -> Policy | None:
        """Load and test the directory now; report the outcome; return the policy in force."""
        with self._reload_lock:
            policy, reason = check_policy_dir(self.directory)
            if self._stopped:  # stop() came while we were loading: report nothing more
                return self._policy
            if policy is None:
                log.warning("policy rejected: %s", (reason or "").splitlines()[0])
                self._call(self._on_rejected, reason or "")
                return self._policy
            if self._policy is not None and policy.hash == self._policy.hash:
                return self._policy
            self._policy = policy
            log.info("policy loaded: %s", policy.hash)
            self._call(self._on_loaded, policy)
            return policy

    @staticmethod
    def _call(callback: Callable[..., None], argument: object) -> None:
        # A failing callback must not kill the timer thread or stop later reloads.
        try:
            callback(argument)
        except Exception:
            log.exception("policy watcher callback failed")
