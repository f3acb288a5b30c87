"""Which skips a run may have: the one allow-list, and the check `make test` and CI apply with it.

Every tool the suite needs is either a Python package in the lock or fetched by `make tools`, so on a
fresh clone nothing should skip but the tests that need KubeRay's CRD schemas, which no package registry
ships (our CI has them beside the clone). With ``--strict-skips`` (`make test`, `make test-fast`, and so
`.ci/run`) any other skip fails the run, listed with its reason; in CI (``CI=true``) the external tools
fail instead of skipping at all (``tests.conftest.external_tool``).
"""

from __future__ import annotations

import pytest

# Reason prefix -> why such a skip is acceptable outside CI. Keep it this short.
ALLOWED_SKIPS: dict[str, str] = {
    "KUBERAY_CRD_DIR ": "KubeRay's CRD schemas come from KubeRay's repository, not from a package registry",
}


def is_allowed(reason: str) -> bool:
    return reason.startswith(tuple(ALLOWED_SKIPS))


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason pytest records for a skip (``longrepr`` is ``(path, line, "Skipped: reason")``)."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-skips",
        action="store_true",
        help="fail the run when a test skips for a reason not on tests/skip_policy.py's ALLOWED_SKIPS",
    )


class _SkipRecorder:
    def __init__(self) -> None:
        self.unexpected: list[tuple[str, str]] = []

    def record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = skip_reason(report)
            if not is_allowed(reason):
                self.unexpected.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.section("unexpected skips (--strict-skips)", red=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.unexpected)} test(s) skipped for a reason off tests/skip_policy.py's ALLOWED_SKIPS: "
            "install what the reason names (`make tools` fetches helm and kubectl)"
        )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--strict-skips"):
        config.pluginmanager.register(_SkipRecorder(), "strict-skips")
