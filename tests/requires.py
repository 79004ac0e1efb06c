"""One way for a test to need a tool (or a condition) of the machine running it.

A missing tool FAILS the test with "needs X: install with `make tools`", so a run on a
machine without it cannot pass with whole layers untested. A run that opts out explicitly
(BLUMEOPS_ALLOW_SKIPS=1) skips such tests instead. Either way the end of the run lists
them, with every other skip (this module is also a pytest plugin: tests/conftest.py).

    binary = require(shutil.which("nginx"), "nginx (Debian nginx)")   # in a test or fixture
    @needs(shutil.which("promtool"), "promtool (Debian prometheus)")  # as a marker

Credential-gated live suites (KUBECONFIG, TAILSCALE_API_KEY) stay plain skips.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any, TypeVar

import pytest

ALLOW_SKIPS = "BLUMEOPS_ALLOW_SKIPS"
MAKE_TOOLS = "install with `make tools`"
PYENV = "install with `pyenv install {minor}`"
MARKER = "needs"

T = TypeVar("T")


class ToolMissing(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """The test failed because its tool is missing (listed apart at the end of the run)."""


def allow_skips() -> bool:
    return os.environ.get(ALLOW_SKIPS) == "1"


def require(found: T | None, what: str, how: str = MAKE_TOOLS) -> T:
    """`found` when it is truthy; otherwise fail the running test (skip it when the run
    set BLUMEOPS_ALLOW_SKIPS=1), saying what is missing and how to get it."""
    if found:
        return found
    message = f"needs {what}: {how}"
    if allow_skips():
        pytest.skip(f"{message} ({ALLOW_SKIPS}=1)")
    raise ToolMissing(f"{message} (or set {ALLOW_SKIPS}=1 to skip the tests that need it)",
                      pytrace=False)


def needs(found: object, what: str, how: str = MAKE_TOOLS) -> pytest.MarkDecorator:
    """`require` as a marker, checked before the test's fixtures are set up."""
    return getattr(pytest.mark, MARKER)(bool(found), what, how)


# --- the plugin (tests/conftest.py loads it) ---------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(found, what, how): a tool the test needs "
                            "(tests/requires.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MARKER):
        require(*mark.args, **mark.kwargs)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(ToolMissing):
        report.user_properties.append((MARKER, str(call.excinfo.value)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every test that did not run for want of a tool or credential: the skipped
    ones by reason, and the ones that failed because a tool is missing."""
    by_reason: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
            report.longrepr)
        by_reason.setdefault(f"skipped: {reason.removeprefix('Skipped: ')}", []).append(
            report.nodeid)
    for kind in ("failed", "error"):
        for report in terminalreporter.stats.get(kind, []):
            for key, message in getattr(report, "user_properties", ()):  # none on collection
                if key == MARKER:
                    by_reason.setdefault(f"FAILED: {message}", []).append(report.nodeid)
    if not by_reason:
        return
    terminalreporter.section("tests that did not run here (missing tool or credential)")
    for reason, nodeids in sorted(by_reason.items()):
        terminalreporter.write_line(f"{len(nodeids)} {reason}")
        for nodeid in nodeids:
            terminalreporter.write_line(f"    {nodeid}")
    if any(r.startswith("FAILED") for r in by_reason):
        terminalreporter.write_line(f"install the tools (`make tools`), or set {ALLOW_SKIPS}=1 "
                                    "to skip these tests (they stay listed here)")
