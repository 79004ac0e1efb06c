"""A host that answers garbage, floods, or hangs: over real sshd, each is that host's
typed error with the reason, in seconds, in bounded memory, and nothing stays behind on
the host. The hostile agent is a `python3` on the host's PATH (as a broken or replaced
interpreter would be); the hung one is the real agent stuck on a FIFO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from sshhost import (
    SshLab,
    agents_on,
    hostile_python,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

from blumeops.transports.exceptions import RemoteError, TransportError
from blumeops.transports.types import FileBatch, FileWrite, ObserveRequest

pytestmark = [needs_sshd, pytest.mark.slow]


def reply(result: object) -> str:
    return "printf '%s\\n' '" + json.dumps({"ok": True, "result": result}) + "'"


DEEP = 200_000
GARBAGE = {
    # The batch's results are a string: each "answer" a character.
    "wrong types": reply({"results": "garbage"}),
    # Facts without the fields every host has; a manager that is a list.
    "missing keys": reply({"facts": {"python": "3.9.18", "managers": {"supervisor": []}},
                           "files": {}, "ports": [], "pidfiles": {}}),
    # Deeper than json can parse (RecursionError), then deeper than any shape allows.
    "deep nesting": "printf '%s' '{\"ok\": true, \"result\": {\"facts\": '; "
                    f"head -c {DEEP} /dev/zero | tr '\\0' '['; "
                    f"head -c {DEEP} /dev/zero | tr '\\0' ']'; printf '}}}}'",
    "not an object": reply(["a", "list"]),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_garbage_answer_is_the_hosts_typed_error(ssh_lab: SshLab, kind: str) -> None:
    host = ssh_lab.add_host("mangle")
    hostile_python(host, GARBAGE[kind])
    t = ssh_lab.transport("mangle")
    for call in (t.facts, lambda: t.observe(ObserveRequest(paths=["~/x"])),
                 lambda: t.call({"op": "batch", "ops": [{"op": "observe"}]})):
        with pytest.raises(RemoteError) as caught:
            call()
        assert caught.value.host == "mangle"
        assert "host mangle: its agent's answer is unusable" in caught.value.message, \
            caught.value.message


def test_a_flooding_host_is_cut_off_at_the_cap_in_bounded_memory(ssh_lab: SshLab) -> None:
    """300 MB of answer: read up to the cap (32 MB), then the round trip is ended; this
    side's memory stays far below what the flood would take."""
    host = ssh_lab.add_host("flood")
    hostile_python(host, "head -c 300000000 /dev/zero")
    program = textwrap.dedent(f"""
        import json, time
        from blumeops.transports.exceptions import TransportError
        from blumeops.core.sshtarget import SshTarget
        from blumeops.transports.ssh import SshTransport
        t = SshTransport("flood", SshTarget(destination="flood",
                         config_file={str(ssh_lab.ssh_config)!r}), {str(ssh_lab.control)!r})
        start = time.monotonic()
        try:
            t.facts()
            said = "answered"
        except TransportError as exc:
            said = type(exc).__name__ + ": " + exc.message
        # VmHWM: this process's own peak (ru_maxrss carries pytest's over exec).
        hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
        print(json.dumps({{"said": said, "took": time.monotonic() - start,
                          "maxrss_mb": int(hwm) // 1024}}))
    """)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["said"].startswith("BadAnswer: host flood: its agent's answer is unusable: "
                                  "more than 32 MB"), got
    assert got["maxrss_mb"] < 150, got  # the whole answer would be 300 MB and more
    assert "Traceback" not in proc.stderr


def test_a_hung_agent_times_out_in_seconds_and_leaves_nothing_on_the_host(
        ssh_lab: SshLab) -> None:
    """The real agent, stuck opening a FIFO where a state file should be (as on a hung
    mount): the round trip ends at its deadline with the reason, and the stuck process
    on the host is gone, not left behind one per sync."""
    host = ssh_lab.add_host("stuck")
    fifo = host.root / "state.json"
    os.mkfifo(fifo)
    t = ssh_lab.transport("stuck")
    t.facts()  # connected: what follows is the agent's time, not ssh's handshake
    start = time.monotonic()
    with pytest.raises(TransportError) as caught:
        t.call({"op": "batch", "ops": [{"op": "observe"}, {"op": "jobs", "path": str(fifo)}]})
    took = time.monotonic() - start
    assert took < 20, took  # the budget of an observe and a read: seconds, not 300
    assert "host stuck: the host did not finish within" in caught.value.message
    assert "stuck in jobs" in caught.value.message
    deadline = time.monotonic() + 5
    while agents_on(host) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agents_on(host) == []
    # The host still works for everything else.
    t.put_files(FileBatch(writes=[FileWrite(str(host.root / "ok"), b"ok")]))
    assert (host.root / "ok").read_bytes() == b"ok"
