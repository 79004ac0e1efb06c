"""The agent ops behind remote health commands, log tails and written-file indexes:
in-process and on python3.9 (what a Mac ships), through the same wire as SSH."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import python39

from blumeops.transports.exceptions import RemoteError
from blumeops.transports.local import LocalTransport
from blumeops.transports.types import FileBatch, FileWrite


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    else:
        yield LocalTransport("here", python=python39())


def command(argv: list[str], cwd: Path | None = None, timeout: float = 5.0) -> dict[str, object]:
    return {"op": "probe", "kind": "command", "argv": argv,
            "cwd": str(cwd) if cwd else None, "timeout": timeout}


def test_a_health_command_runs_in_its_directory_and_its_exit_status_is_the_verdict(
        local: LocalTransport, tmp_path: Path) -> None:
    (tmp_path / "flag").write_text("")
    assert local.call(command(["test", "-f", "flag"], tmp_path)) == {
        "ok": True, "detail": "exit 0"}
    assert local.call(command(["test", "-f", "flag"], tmp_path / "not-yet")) == {
        "ok": False, "detail": "exit 1"}  # missing cwd: runs from home, where no flag is
    # Output is not sent back (it would reach status and the state DB).
    said = local.call(command(["sh", "-c", "echo SECRET-ISH; exit 4"]))
    assert said == {"ok": False, "detail": "exit 4"}
    assert local.call(command(["no-such-command-here"])) == {
        "ok": False, "detail": "command not found: no-such-command-here"}


def test_a_health_command_that_hangs_is_cut_at_its_timeout_and_the_batch_goes_on(
        local: LocalTransport) -> None:
    t0 = time.monotonic()
    got = local.call({"op": "batch", "ops": [command(["sleep", "30"], timeout=0.5),
                                             {"op": "list", "dir": "/nonexistent"}]})
    assert time.monotonic() - t0 < 10
    assert got["results"] == [{"ok": False, "detail": "command timed out after 0.5s"},
                              {"files": {}}]
    with pytest.raises(RemoteError):  # argv must be a list of strings
        local.call({"op": "probe", "kind": "command", "argv": "sleep 1"})


def test_tail_returns_the_last_lines_with_the_services_secrets_masked(
        local: LocalTransport, tmp_path: Path) -> None:
    env = tmp_path / "svc.env"
    env.write_text(json.dumps({"TOKEN": "tok-123", "LONG": "tok-123-and-more"}))
    key = tmp_path / "svc.key"
    key.write_text("file-secret\n")
    other = tmp_path / "other.key"
    other.write_text("line")  # another service's secret: not this log's to mask
    index = tmp_path / "files.json"
    index.write_text(json.dumps({"svc:KEY": str(key), "other:KEY": str(other)}))
    log = tmp_path / "svc.log"
    log.write_text("".join(f"line {i}\n" for i in range(100))
                   + "auth tok-123-and-more then tok-123 and file-secret\nlast\n")
    got = local.call({"op": "tail", "paths": [str(log), str(tmp_path / "none.log")],
                      "bytes": 4096, "lines": 3, "redact_env": [str(env)],
                      "redact_index": [str(index), "svc:"]})
    assert got == {"tails": {
        str(log): "line 99\nauth [redacted] then [redacted] and [redacted]\nlast",
        str(tmp_path / "none.log"): None}}
    # Bounded: only the last `bytes` are read, and the cut first line is dropped.
    got = local.call({"op": "tail", "paths": [str(log)], "bytes": 20, "lines": 20})
    assert got["tails"][str(log)] == "last"


def test_index_lists_what_was_written_and_whether_it_is_still_there(
        local: LocalTransport, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    index = tmp_path / "files.json"
    index.write_text(json.dumps({"svc:a.txt": str(tmp_path / "a.txt"),
                                 "svc:b.txt": str(tmp_path / "b.txt"), "odd": 3}))
    got = local.call({"op": "index", "path": str(index), "stat": True})
    assert got["entries"] == {"svc:a.txt": str(tmp_path / "a.txt"),
                              "svc:b.txt": str(tmp_path / "b.txt")}
    assert got["files"][str(tmp_path / "a.txt")]["kind"] == "file"
    assert got["files"][str(tmp_path / "b.txt")]["kind"] == "missing"
    assert got["damaged"] is True  # "odd" is not a path blumeops wrote
    assert local.call({"op": "index", "path": str(tmp_path / "none.json")}) == {
        "entries": {}, "files": {}, "damaged": False, "outside": {}}


def test_a_removal_root_may_be_given_from_home(local: LocalTransport, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/` in put's root is the SSH user's home, as in its paths (a unit host's secret
    files are removed under `~/.local/state/...` before its home is known)."""
    home = tmp_path / "home"
    (home / "lab").mkdir(parents=True)
    (home / "lab" / "old.key").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    if local.python is not None:
        os.environ["HOME"] = str(home)  # the child inherits it
    got = local.put_files(FileBatch([FileWrite("~/lab/new.key", b"y", secret=True)],
                                    ["~/lab/old.key"], root="~/lab"))
    assert got.removed == (str(home / "lab" / "old.key"),)
    assert (home / "lab" / "new.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(RemoteError, match="outside"):
        local.put_files(FileBatch(removes=[str(tmp_path / "elsewhere")], root="~/lab"))
