"""tests/requires.py: a missing tool fails its test with a clear message, unless the run
opts out with BLUMEOPS_ALLOW_SKIPS=1; either way the end of the run lists it.

Each case runs a real pytest, in a subprocess, on a small test file that uses the helper
(the plugin is loaded with `-p requires`, as tests/conftest.py loads it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import shutil
import pytest
from requires import needs, require

MISSING = "bo-no-such-tool-4f2a"


@needs(shutil.which(MISSING), "bo-no-such-tool (Debian bo-tools)")
def test_marker() -> None:
    raise AssertionError("ran without its tool")


@pytest.fixture
def tool() -> str:
    return require(shutil.which(MISSING), "bo-no-such-tool (Debian bo-tools)")


def test_fixture(tool: str) -> None:
    raise AssertionError("ran without its tool")


def test_inline() -> None:
    require(shutil.which(MISSING), "bo-no-such-tool (Debian bo-tools)")
    raise AssertionError("ran without its tool")


@needs(shutil.which("sh"), "sh")
def test_present() -> None:
    assert require(shutil.which("sh"), "sh").endswith("/sh")


@pytest.mark.skipif(True, reason="live suite: set SOME_API_KEY")
def test_credential_gated() -> None:
    pass
'''


def run(tmp_path: Path, allow: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "BLUMEOPS_ALLOW_SKIPS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if allow is not None:
        env["BLUMEOPS_ALLOW_SKIPS"] = allow
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "requires", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


NEEDS = "needs bo-no-such-tool (Debian bo-tools): install with `make tools`"


@pytest.mark.parametrize("allow", [None, "true"])
def test_a_missing_tool_fails_its_tests_with_how_to_install_it(tmp_path: Path,
                                                               allow: str | None) -> None:
    out = run(tmp_path, allow)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed, 1 skipped, 2 errors" in out.stdout, out.stdout
    assert "ran without its tool" not in out.stdout
    assert out.stdout.count(f"{NEEDS} (or set BLUMEOPS_ALLOW_SKIPS=1 to skip the tests "
                            "that need it)") >= 3, out.stdout
    summary = out.stdout.split("tests that did not run here (missing tool or credential)")[1]
    assert f"3 FAILED: {NEEDS}" in summary
    for name in ("test_marker", "test_fixture", "test_inline", "test_credential_gated"):
        assert f"test_sample.py::{name}" in summary, summary
    assert "1 skipped: live suite: set SOME_API_KEY" in summary
    assert "test_present" not in summary


def test_allow_skips_skips_them_and_lists_them_at_the_end(tmp_path: Path) -> None:
    out = run(tmp_path, "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 4 skipped" in out.stdout, out.stdout
    summary = out.stdout.split("tests that did not run here (missing tool or credential)")[1]
    assert f"3 skipped: {NEEDS} (BLUMEOPS_ALLOW_SKIPS=1)" in summary, summary
    for name in ("test_marker", "test_fixture", "test_inline", "test_credential_gated"):
        assert f"test_sample.py::{name}" in summary, summary
    assert "FAILED" not in summary


def test_a_run_with_every_tool_lists_nothing(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "requires", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, f"{tmp_path}/test_sample.py::test_present"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "did not run here" not in out.stdout
