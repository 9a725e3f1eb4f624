"""Policy: data classes, units, scopes and rules as YAML data, and a pure rule engine.

Public API (the watcher in ``service.policy.reload`` and the click group in
``service.policy.cli`` are imported from their modules, so that the pure engine stays light):
"""

from service.policy.conditions import CONDITIONS
from service.policy.engine import (
    Policy,
    classify,
    enrich,
    evaluate,
    evaluate_signal,
    run_policy_tests,
)
from service.policy.loader import (
    default_policy_dir,
    load_policy,
    load_policy_files,
    policy_hash,
    read_policy_files,
    resolve_policy_dir,
)
from service.policy.schemas import (
    GroupKey,
    MonitoringSignal,
    PolicyError,
    Problem,
    Response,
    Sensitivity,
    Severity,
    TestFailure,
    Verdict,
)
from service.policy.windows import WindowState

__all__ = [
    "CONDITIONS",
    "GroupKey",
    "MonitoringSignal",
    "Policy",
    "PolicyError",
    "Problem",
    "Response",
    "Sensitivity",
    "Severity",
    "TestFailure",
    "Verdict",
    "WindowState",
    "classify",
    "default_policy_dir",
    "enrich",
    "evaluate",
    "evaluate_signal",
    "load_policy",
    "load_policy_files",
    "policy_hash",
    "read_policy_files",
    "resolve_policy_dir",
    "run_policy_tests",
]
