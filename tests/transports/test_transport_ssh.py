"""The SSH transport against real sshd processes on 127.0.1.x, with a python3.9 host."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sshhost import (
    SshLab,
    descendants,
    free_port,
    needs_sshd,
    ssh_children,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

from blumeops.core.sshtarget import SshTarget
from blumeops.transports.exceptions import (
    HostKeyChanged,
    HostUnreachable,
    PythonUnsupported,
    RemoteError,
    TransportError,
)
from blumeops.transports.ssh import SshTransport
from blumeops.transports.types import FileBatch, FileWrite, ObserveRequest, PortCheck, Reason
from polling import wait_for

pytestmark = [needs_sshd, pytest.mark.slow]

HOSTILE = "it's \"quoted\" $(touch PWN) `touch PWN`; touch PWN\n${HOME} %s %C \\ \t end"


def test_observe_is_one_round_trip_with_facts_and_hashes(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    conf = host.root / "app" / "conf.yaml"
    conf.parent.mkdir()
    conf.write_bytes(b"port: 8080\n")
    with socket.socket() as listener:
        listener.bind((host.address, 0))
        listener.listen()
        port = listener.getsockname()[1]
        seen = ssh_lab.transport("indri").observe(ObserveRequest(
            paths=[str(conf), "~/app/missing"],
            ports=[PortCheck(host.address, port),
                   PortCheck(host.address, free_port(host.address))]))
    assert host.sessions() == 1  # one command on the host answered everything
    assert (seen.facts.python or "").startswith("3.9.")  # the host's python3, not ours
    assert seen.facts.system == "Linux" and seen.facts.home == str(host.root)
    assert seen.facts.user == "root" and seen.facts.machine == os.uname().machine
    assert seen.files[str(conf)].sha256 == hashlib.sha256(b"port: 8080\n").hexdigest()
    assert not seen.files["~/app/missing"].exists
    assert list(seen.ports.values()) == [True, False]


def test_put_files_batch_lands_with_modes(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("sifaka")
    t = ssh_lab.transport("sifaka")
    secret = host.root / "svc" / "secrets.env"
    result = t.put_files(FileBatch(writes=[
        FileWrite("~/svc/secrets.env", b"PASSWORD=hunter2\n", mode=0o644, secret=True),
        FileWrite(str(host.root / "svc" / "run"), b"#!/bin/sh\nexec true\n", mode=0o750),
        FileWrite(str(host.root / "svc" / "conf" / "a.yaml"), b"a: 1\n"),
    ]))
    assert len(result.written) == 3 and host.sessions() == 1
    seen = t.observe(ObserveRequest(paths=[str(secret), str(host.root / "svc" / "run"),
                                           str(host.root / "svc" / "conf" / "a.yaml")]))
    modes = [s.mode for s in seen.files.values()]
    assert modes == [0o600, 0o750, 0o644]
    assert secret.read_bytes() == b"PASSWORD=hunter2\n"
    assert seen.files[str(secret)].sha256 == hashlib.sha256(b"PASSWORD=hunter2\n").hexdigest()


def _wait_for_temp(directory: Path, timeout: float = 30) -> Path:
    def arriving() -> Path | None:
        return next((p for p in directory.iterdir()
                     if p.name.endswith(".blumeops-tmp") and p.stat().st_size > 0), None)

    return wait_for(arriving, timeout, "the big file to start arriving", every=0.002)


def _put_in_background(t: SshTransport, batch: FileBatch) -> tuple[threading.Thread,
                                                                    list[BaseException]]:
    errors: list[BaseException] = []

    def put() -> None:
        try:
            t.put_files(batch)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=put)
    thread.start()
    return thread, errors


BIG = 96 * 1024 * 1024


@pytest.mark.parametrize("cut", ["ssh client killed", "host agent killed"])
def test_dropped_connection_leaves_old_content_and_no_litter(ssh_lab: SshLab, cut: str) -> None:
    host = ssh_lab.add_host("gilbert")
    t = ssh_lab.transport("gilbert")
    target = host.root / "data" / "big.bin"
    t.put_files(FileBatch(writes=[FileWrite(str(target), b"old content")]))
    big = os.urandom(1024) * (BIG // 1024)
    thread, errors = _put_in_background(t, FileBatch(writes=[FileWrite(str(target), big)]))
    temp = _wait_for_temp(target.parent)
    if cut == "ssh client killed":
        victims = ssh_children()
    else:  # the python3 the host's sshd started: as if the host lost power mid-write
        victims = [p for p in descendants(host.proc.pid if host.proc else 0)
                   if Path(f"/proc/{p}/comm").read_text().strip().startswith("python3")]
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert errors and isinstance(errors[0], TransportError), errors
    if cut == "ssh client killed":
        assert isinstance(errors[0], HostUnreachable) and errors[0].reason is Reason.dropped
    else:
        assert isinstance(errors[0], RemoteError) and "without answering" in str(errors[0])
    assert temp.stat().st_size < BIG if temp.exists() else True
    assert target.read_bytes() == b"old content"  # never half of the new one
    follow_up = ssh_lab.transport("gilbert")  # a fresh run against the same host
    result = follow_up.put_files(FileBatch(writes=[FileWrite(str(target.parent / "x"), b"x")]))
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin", "x"]
    if cut == "host agent killed":
        assert result.swept == (str(temp),)  # the dead agent's litter, removed
    assert target.read_bytes() == b"old content"


def test_unknown_host_key_refused_unless_accept_new(ssh_lab: SshLab) -> None:
    ssh_lab.add_host("newbox", known=False)
    with pytest.raises(HostUnreachable) as caught:
        ssh_lab.transport("newbox").facts()
    assert caught.value.reason is Reason.host_key_unknown
    assert "newbox" in str(caught.value) and "accept-new" in str(caught.value)
    assert ssh_lab.known_hosts.read_text() == ""
    facts = ssh_lab.transport("newbox", accept_new=True).facts()
    assert facts.python_ok
    assert "127.0.1.11" in ssh_lab.known_hosts.read_text()  # recorded on first contact
    assert ssh_lab.transport("newbox").facts().python_ok  # and now known without the flag


def test_changed_host_key_always_refused(ssh_lab: SshLab) -> None:
    ssh_lab.add_host("indri")
    host = ssh_lab.add_host("sifaka")
    assert ssh_lab.transport("sifaka").facts().python_ok
    ssh_lab.close_transports()
    host.generate_host_key()  # reinstalled, or someone in the middle
    host.restart()
    for accept_new in (False, True):
        with pytest.raises(HostKeyChanged) as caught:
            ssh_lab.transport("sifaka", accept_new=accept_new).facts()
        err = caught.value
        assert err.reason is Reason.host_key_changed and err.host == "sifaka"
        assert err.known_hosts_line == f"{ssh_lab.known_hosts}:2"  # sifaka's line
        assert "sifaka" in str(err) and "CHANGED" in str(err)
        assert str(ssh_lab.known_hosts) in str(err)
        assert f"ssh-keygen -R '[{host.address}]:{host.port}'" in str(err)
    assert ssh_lab.transport("indri").facts().python_ok  # the other host is unaffected


def test_connection_refused_is_quick_and_typed(ssh_lab: SshLab) -> None:
    address = "127.0.1.29"  # no sshd there
    t = SshTransport("ghost", SshTarget(destination=address, port=free_port(address),
                                        config_file=str(ssh_lab.ssh_config)), ssh_lab.control)
    with pytest.raises(HostUnreachable) as caught:
        t.facts()
    assert caught.value.reason is Reason.refused
    assert "ghost" in str(caught.value) and "refused" in str(caught.value)


def test_silent_host_times_out(ssh_lab: SshLab) -> None:
    address = "127.0.1.28"
    with socket.socket() as mute:  # accepts TCP, never says a word
        mute.bind((address, 0))
        mute.listen()
        t = SshTransport("mute", SshTarget(destination=address, port=mute.getsockname()[1],
                                           config_file=str(ssh_lab.ssh_config),
                                           connect_timeout=1), ssh_lab.control)
        start = time.monotonic()
        with pytest.raises(HostUnreachable) as caught:
            t.facts()
    assert caught.value.reason is Reason.timeout
    assert time.monotonic() - start < 5


def test_wrong_key_is_auth_failed(ssh_lab: SshLab, tmp_path: Path) -> None:
    ssh_lab.add_host("indri")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = tmp_path / "ssh_config"
    config.write_text(ssh_lab.ssh_config.read_text().replace(str(ssh_lab.client_key), str(other)))
    t = SshTransport("indri", SshTarget(destination="indri", config_file=str(config)),
                     ssh_lab.control)
    with pytest.raises(HostUnreachable) as caught:
        t.facts()
    assert caught.value.reason is Reason.auth_failed


def test_host_without_python3(ssh_lab: SshLab) -> None:
    ssh_lab.add_host("nas", python=None)
    with pytest.raises(PythonUnsupported) as caught:
        ssh_lab.transport("nas").facts()
    assert caught.value.facts.python is None and "no python3" in str(caught.value)


def test_one_connection_serves_every_call(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    t = ssh_lab.transport("indri")
    for _ in range(6):
        t.facts()
    with ThreadPoolExecutor(12) as pool:  # more than sshd's MaxSessions (10) at once
        list(pool.map(lambda _: t.facts(), range(24)))
    assert host.connections() == 1, host.log_text()
    assert host.sessions() == 30
    established = subprocess.run(
        ["ss", "-Htn", "state", "established", "dst", f"{host.address}:{host.port}"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(established) == 1, established  # the master's one TCP connection


def test_parallel_first_calls_still_share_one_connection(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    t = ssh_lab.transport("indri")
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: t.facts(), range(6)))
    assert host.connections() == 1


def test_hostile_catalog_value_arrives_byte_exact_and_runs_nothing(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    t = ssh_lab.transport("indri")
    odd_dir = host.root / "it's $(x); `y`"
    path = odd_dir / "we'ird \"name\" $(touch PWN).conf"
    t.put_files(FileBatch(writes=[FileWrite(str(path), HOSTILE.encode())]))
    assert path.read_bytes() == HOSTILE.encode()
    echoed = t.run(["python3", "-c", "import os,sys; sys.stdout.write(sys.argv[1] + '|' + "
                    "os.environ['VALUE'])", HOSTILE], env={"VALUE": HOSTILE}, cwd=str(odd_dir))
    assert echoed.returncode == 0, echoed.stderr
    assert echoed.stdout == HOSTILE + "|" + HOSTILE
    seen = t.observe(ObserveRequest(paths=[str(path)]))
    assert seen.files[str(path)].sha256 == hashlib.sha256(HOSTILE.encode()).hexdigest()
    pwned = [p for p in (host.root, odd_dir, Path.cwd(), Path("/")) if (p / "PWN").exists()]
    assert pwned == []
    assert "PWN" not in host.log_text()  # sshd only ever saw the fixed command


def test_secret_canary_never_in_ps_or_sshd_log(ssh_lab: SshLab) -> None:
    canary = "CANARY-ssh-5e1d-do-not-leak"
    host = ssh_lab.add_host("indri", log_level="DEBUG3")
    t = ssh_lab.transport("indri")
    seen_in_ps: list[str] = []
    agent_seen = 0  # ps snapshots taken while the host's agent was running
    stop = threading.Event()

    def watch() -> None:
        nonlocal agent_seen
        while not stop.is_set():
            out = subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True,
                                 text=True).stdout
            agent_seen += "zlib.decompress" in out  # the bootstrap's fixed command line
            seen_in_ps.extend(line for line in out.splitlines() if canary in line)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        filler = os.urandom(64 * 1024 * 1024)  # keeps the call busy while ps looks
        for _ in range(3):
            t.put_files(FileBatch(writes=[
                FileWrite(str(host.root / "filler"), filler),
                FileWrite(str(host.root / "svc.env"), f"TOKEN={canary}\n".encode(),
                          secret=True)]))
        result = t.run(["sh", "-c", 'sleep 0.3; test "$TOKEN" = "$EXPECTED" && echo same'],
                       env={"TOKEN": canary, "EXPECTED": canary})
    finally:
        stop.set()
        watcher.join()
    assert result.stdout == "same\n"
    assert agent_seen >= 1 and seen_in_ps == []
    assert canary not in host.log_text()
    assert "debug3" in host.log_text()  # the log was verbose, and still clean
    assert (host.root / "svc.env").read_text() == f"TOKEN={canary}\n"
    assert (host.root / "svc.env").stat().st_mode & 0o777 == 0o600


def test_remote_errors_are_typed(ssh_lab: SshLab) -> None:
    host = ssh_lab.add_host("indri")
    t = ssh_lab.transport("indri")
    with pytest.raises(RemoteError) as caught:
        t.put_files(FileBatch(removes=["/etc/passwd"], root=str(host.root)))
    assert caught.value.code == "outside-root" and "indri" in str(caught.value)
    assert Path("/etc/passwd").exists()


def test_user_port_and_identity_without_an_ssh_config_alias(ssh_lab: SshLab,
                                                            tmp_path: Path) -> None:
    host = ssh_lab.add_host("indri")
    bare = tmp_path / "ssh_config"  # knows no host: everything comes from the target
    bare.write_text(f"UserKnownHostsFile {ssh_lab.known_hosts}\nGlobalKnownHostsFile /dev/null\n"
                    "IdentitiesOnly yes\n")
    target = SshTarget(destination=host.address, user="root", port=host.port,
                       identity_file=str(ssh_lab.client_key), config_file=str(bare))
    t = SshTransport("indri", target, ssh_lab.control)
    try:
        assert t.facts().home == str(host.root)
        without_key = SshTransport("indri", SshTarget(
            destination=host.address, user="root", port=host.port, config_file=str(bare)),
            ssh_lab.control)
        with pytest.raises(HostUnreachable) as caught:
            without_key.facts()
        assert caught.value.reason is Reason.auth_failed
    finally:
        t.close()
