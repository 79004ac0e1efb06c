"""examples/multihost with one hostile host: its agent answers garbage or hangs. That
host is reported with the reason, never a traceback; the other hosts are planned,
applied and healed (by `apply` and by the controller), and nothing piles up on the bad
host."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401
from sshhost import agents_on, hostile_python, restore_python

pytestmark = [needs_sshd, pytest.mark.slow]

# A batch whose results are a string (each "answer" a character): the engine used to
# index into it and end with a traceback.
GARBAGE = ("printf '%s\\n' '" + json.dumps({"ok": True, "result": {"results": "garbage"}})
           + "'")


def services(lab: MultiLab) -> dict[str, dict[str, object]]:
    out = lab.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def no_traceback(*procs: Any) -> None:
    for proc in procs:
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_host_answering_garbage_is_its_own_error_and_the_others_converge(
        multihost: MultiLab) -> None:
    hostile_python(multihost.host("app"), GARBAGE)
    apply = multihost.cli("apply", "--yes")
    plan = multihost.cli("plan")
    no_traceback(apply, plan)
    assert apply.returncode == 1
    assert "host app: its agent's answer is unusable" in apply.stderr, apply.stderr
    state = services(multihost)
    assert state["store"]["health"] == "Healthy" and state["status"]["health"] == "Healthy"
    assert state["web"]["health"] == "Unknown" and "unusable" in str(state["web"]["detail"])
    assert multihost.get("store").status_code == 200
    assert plan.returncode == 1 and "host app not planned" in plan.stderr, plan.stderr

    restore_python(multihost.host("app"))
    again = multihost.cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert multihost.get("web").status_code == 200


def test_a_hung_agent_holds_nothing_up_and_is_not_left_behind(multihost: MultiLab) -> None:
    """app's agent blocks opening its job records (a FIFO, as on a hung mount): plan
    ends at the round trip's deadline with that reason, the other hosts are planned,
    and the stuck process on app is gone after each run."""
    multihost.cli("apply", "--yes", check=True)
    records = multihost.remote_state("app") / "jobs" / "state.json"
    records.parent.mkdir(exist_ok=True)
    records.unlink(missing_ok=True)
    os.mkfifo(records)
    for _ in range(2):
        start = time.monotonic()
        plan = multihost.cli("plan", "--output", "json", timeout=120)
        took = time.monotonic() - start
        no_traceback(plan)
        assert took < 40, took  # the observe's budget, not ssh's 300 s
        got = json.loads(plan.stdout)
        # gate and data were observed: nothing to do there (app's are listed, not applied)
        assert {c["target"].partition("@")[2] for c in got["changes"]} <= {"app"}
        notes = " ".join(got["notes"])
        assert "host app not planned: host app: the host did not finish within" in notes
        assert "stuck in jobs" in notes
        deadline = time.monotonic() + 5
        while agents_on(multihost.host("app")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert agents_on(multihost.host("app")) == []  # none left, one per run or not
    records.unlink()
    assert multihost.cli("plan").returncode == 0


def test_the_controller_heals_the_other_hosts_while_one_answers_garbage(
        multihost: MultiLab) -> None:
    import httpx
    from controllerlab import wait_for
    from test_multihost import commit_and_follow

    proc, api, log = commit_and_follow(multihost)

    def health() -> dict[str, tuple[str, object, str]]:
        try:
            got = httpx.get(f"http://{api}/api/status", timeout=5).json()["services"]
        except (httpx.HTTPError, ValueError):
            return {}
        return {s["service"]: (s["health"], s["pid"], s["detail"]) for s in got}

    try:
        wait_for(lambda: {h for h, _, _ in health().values()} == {"Healthy"}
                 and len(health()) == 3, 60, "every host applied by the controller")
        hostile_python(multihost.host("app"), GARBAGE)
        wait_for(lambda: health().get("web", ("",))[0] == "Unknown", 30,
                 "app's service Unknown, not Healthy")
        assert "unusable" in str(health()["web"][2])
        pid = health()["store"][1]
        assert isinstance(pid, int)
        os.kill(pid, signal.SIGKILL)  # drift on another host: the controller heals it
        wait_for(lambda: health()["store"][0] == "Healthy" and health()["store"][1] != pid,
                 60, "store on data restarted while app answers garbage")
        assert multihost.get("store").status_code == 200
        restore_python(multihost.host("app"))
        wait_for(lambda: health()["web"][0] == "Healthy", 60, "app healed once it answers")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert "Traceback" not in (multihost.root / "controller.log").read_text()
