"""The agent and its wire, without sshd: in-process, and as a real python3.9 child.

Every test runs against both: the in-process agent (what `LocalTransport` uses) and the
same code sent over the wire to a 3.9 interpreter (what a Mac runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import PY39, needs_py39, python38, python39

from blumeops.transports import wire
from blumeops.transports.exceptions import PythonUnsupported, RemoteError
from blumeops.transports.local import LocalTransport
from blumeops.transports.types import FileBatch, FileWrite, ObserveRequest, PortCheck


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    else:
        yield LocalTransport("here", python=python39())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@needs_py39
def test_agent_runs_on_python39() -> None:
    facts = LocalTransport("here", python=PY39).facts()
    assert facts.python is not None and facts.python.startswith("3.9.")
    assert facts.system == os.uname().sysname and facts.python_ok


def test_old_python_answers_its_version_and_uname() -> None:
    py38 = python38()
    with pytest.raises(PythonUnsupported) as caught:
        LocalTransport("old", python=py38).facts()
    assert caught.value.facts.python is not None and caught.value.facts.python.startswith("3.8")
    assert caught.value.facts.system == "Linux" and not caught.value.facts.python_ok
    assert "needs python3 >= 3.9" in str(caught.value)


def test_missing_python_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(PythonUnsupported) as caught:
        LocalTransport("bare", python=str(tmp_path / "no-python3")).facts()
    assert caught.value.facts.python is None


def test_put_then_observe_shows_hashes_and_modes(local: LocalTransport, tmp_path: Path) -> None:
    secret = tmp_path / "etc" / "deep" / "token.env"
    script = tmp_path / "bin" / "run.sh"
    plain = tmp_path / "conf.yaml"
    result = local.put_files(FileBatch(writes=[
        FileWrite(str(secret), b"TOKEN=s3cr3t\n", mode=0o644, secret=True),
        FileWrite(str(script), b"#!/bin/sh\n", mode=0o755),
        FileWrite(str(plain), b"a: 1\n", mode=0o640),
    ]))
    assert set(result.written) == {str(secret), str(script), str(plain)}
    assert (mode(secret), mode(script), mode(plain)) == (0o600, 0o755, 0o640)
    seen = local.observe(ObserveRequest(paths=[str(secret), str(plain), str(tmp_path / "nope"),
                                               str(tmp_path)]))
    assert seen.files[str(secret)].sha256 == hashlib.sha256(b"TOKEN=s3cr3t\n").hexdigest()
    assert seen.files[str(secret)].mode == 0o600 and seen.files[str(plain)].mode == 0o640
    assert seen.files[str(plain)].size == 5 and seen.files[str(plain)].kind == "file"
    assert not seen.files[str(tmp_path / "nope")].exists
    assert seen.files[str(tmp_path)].kind == "dir"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".blumeops-tmp")]


def test_overwrite_keeps_no_temp_and_replaces_content(local: LocalTransport,
                                                     tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    local.put_files(FileBatch(writes=[FileWrite(str(target), b"new")]))
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["f"]


def test_removals_stay_inside_root(local: LocalTransport, tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (root / "escape").symlink_to(outside)  # root/escape/precious resolves outside
    (root / "old.conf").write_text("bye")
    (root / "link-out").symlink_to(outside / "precious")
    for bad in [str(root / "escape" / "precious"), str(root / ".." / "outside" / "precious"),
                str(root / "link-out"), "/etc/passwd", str(root)]:
        with pytest.raises(RemoteError) as caught:
            local.put_files(FileBatch(writes=[FileWrite(str(root / "new"), b"x")],
                                      removes=[str(root / "old.conf"), bad], root=str(root)))
        assert caught.value.code in ("outside-root", "bad-request"), bad
        # The whole batch was refused: nothing written, nothing removed.
        assert not (root / "new").exists() and (root / "old.conf").exists()
    assert (outside / "precious").read_text() == "keep"
    done = local.put_files(FileBatch(removes=[str(root / "old.conf"), str(root / "gone")],
                                     root=str(root)))
    assert done.removed == (str(root / "old.conf"),)
    assert not (root / "old.conf").exists()


def test_removal_needs_a_root(local: LocalTransport, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RemoteError, match="root"):
        local.put_files(FileBatch(removes=[str(tmp_path / "f")]))
    assert (tmp_path / "f").exists()


def test_temp_files_of_a_dead_writer_are_swept(local: LocalTransport, tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    litter = tmp_path / f".conf.yaml.{proc.pid}.abcd1234.blumeops-tmp"
    litter.write_text("half a fi")
    live = tmp_path / f".other.{os.getpid()}.abcd1234.blumeops-tmp"  # a live writer: kept
    live.write_text("in progress")
    result = local.put_files(FileBatch(writes=[FileWrite(str(tmp_path / "conf.yaml"), b"ok")]))
    assert result.swept == (str(litter),)
    assert not litter.exists() and live.exists()


def test_run_takes_argv_without_a_shell(local: LocalTransport, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    hostile = f"a'b\"c $(touch {canary}) `touch {canary}`; touch {canary}\n%s\\"
    result = local.run(["python3", "-c", "import os,sys; sys.stdout.write(sys.argv[1] + "
                        "os.environ['V'] + sys.stdin.read())", hostile],
                       env={"V": hostile}, stdin=hostile.encode())
    assert result.returncode == 0, result.stderr
    assert result.stdout == hostile * 3
    assert not canary.exists()
    missing = local.run(["no-such-command-here"])
    assert missing.returncode == 127


def test_observe_checks_ports_and_pidfiles(local: LocalTransport, tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]  # bound, never listening
            (tmp_path / "live.pid").write_text(str(os.getpid()))
            (tmp_path / "junk.pid").write_text("not a pid")
            seen = local.observe(ObserveRequest(
                ports=[PortCheck("127.0.0.1", port), PortCheck("127.0.0.1", closed_port)],
                pidfiles=[str(tmp_path / "live.pid"), str(tmp_path / "junk.pid"),
                          str(tmp_path / "none.pid")]))
    assert seen.ports == {PortCheck("127.0.0.1", port): True,
                          PortCheck("127.0.0.1", closed_port): False}
    assert seen.pidfiles == {str(tmp_path / "live.pid"): os.getpid(),
                             str(tmp_path / "junk.pid"): None, str(tmp_path / "none.pid"): None}


def test_bad_requests_are_typed_errors(local: LocalTransport) -> None:
    with pytest.raises(RemoteError) as caught:
        local.call({"op": "explode"})
    assert caught.value.code == "bad-request"
    with pytest.raises(RemoteError, match="not absolute"):
        local.observe(ObserveRequest(paths=["relative/path"]))
    with pytest.raises(RemoteError, match="KeyError 'size'") as caught:
        local.call({"op": "put", "files": [{"path": "/tmp/x", "mode": 420}]})
    with pytest.raises(RemoteError) as caught:  # a value never comes back in a message
        local.call({"op": "put", "files": [{"path": "/tmp/x", "mode": 420,
                                            "size": "s3cr3t-value"}]})
    assert caught.value.code == "bad-request" and "s3cr3t" not in str(caught.value)


def test_batch_runs_several_ops_in_one_round_trip(local: LocalTransport, tmp_path: Path) -> None:
    from blumeops.transports.base import put_request, run_request

    put, put_blobs = put_request(FileBatch(writes=[FileWrite(str(tmp_path / "a"), b"AAA")]))
    run, run_blobs = run_request(["cat"], stdin=b"from stdin")
    result = local.call({"op": "batch", "ops": [put, run]}, [*put_blobs, *run_blobs])
    assert result["results"][1]["stdout"] == "from stdin"
    assert (tmp_path / "a").read_bytes() == b"AAA"


def test_decode_finds_the_answer_after_login_chatter() -> None:
    reply = json.dumps({"ok": True, "result": {"x": 1}}).encode()
    assert wire.decode("h", b"Welcome to host!\n" + wire.MARKER + reply, b"") == {"x": 1}
    with pytest.raises(RemoteError, match="no answer"):
        wire.decode("h", b"Traceback...", b"SyntaxError: boom")


def test_remote_command_is_fixed_and_has_no_data() -> None:
    assert wire.REMOTE_COMMAND.startswith("python3 -I -S -c '")
    assert wire.REMOTE_COMMAND.count("'") == 2
    # The agent travels compressed on stdin; the command line never grows with it.
    assert len(wire.REMOTE_COMMAND) < 400


def test_agent_imports_only_the_standard_library() -> None:
    import ast
    import sys

    from blumeops.transports import agent

    tree = ast.parse(Path(agent.__file__).read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert names <= sys.stdlib_module_names, names - sys.stdlib_module_names
    assert "blumeops" not in names
