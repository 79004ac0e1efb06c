"""examples/multihost: on a remote host blumeops writes and removes only inside the lab
dir, as it does on this machine, and keeps its own records there honest: a symlinked
directory does not carry a write out; a damaged index of written files is rebuilt; an
index entry naming a path outside is ignored (not obeyed, not fatal); a file secret
deleted on the host is delivered again."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401
from test_multihost_managers import UnitLab, units_fixture  # noqa: F401
from test_multihost_managers_gaps import status, write

pytestmark = [needs_sshd, pytest.mark.slow]


def edit(lab: MultiLab, old: str, new: str) -> None:
    path = lab.lab / "lab.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def services(lab: MultiLab) -> dict[str, dict[str, object]]:
    out = lab.cli("status", "--output", "json")
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def test_files_stay_inside_the_lab_dir_and_their_index_is_kept_honest(
        multihost: MultiLab) -> None:
    edit(multihost, "    depends_on: [store]\n",
         "    depends_on: [store]\n    files: {conf/a.txt: \"a\\n\"}\n")
    multihost.cli("apply", "--yes", check=True)
    lab = multihost.remote_state("app") / "lab"
    index_path = multihost.remote_state("app") / "files.json"
    index = {"web:conf/a.txt": str(lab / "conf" / "a.txt")}
    assert json.loads(index_path.read_text()) == index

    # A directory in the lab dir that is a symlink to somewhere else on the host.
    outside = multihost.host("app").root / "elsewhere"
    outside.mkdir()
    (lab / "out").symlink_to(outside)
    edit(multihost, "conf/a.txt: \"a\\n\"}", "conf/a.txt: \"a\\n\", out/evil.txt: \"x\\n\"}")
    refused = multihost.cli("apply", "--yes")
    assert refused.returncode == 1
    assert "leads outside" in refused.stdout + refused.stderr and "through a symlink" in (
        refused.stdout + refused.stderr)
    assert list(outside.iterdir()) == []  # nothing written out of the lab dir
    assert "Traceback" not in refused.stdout + refused.stderr
    edit(multihost, ", out/evil.txt: \"x\\n\"}", "}")
    multihost.cli("apply", "--yes", check=True)

    # A damaged index: shown with the reason, rewritten by the next apply.
    index_path.write_text("{not json")
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "index of the files blumeops wrote is damaged" in \
        plan.stdout, plan.stdout + plan.stderr
    multihost.cli("apply", "--yes", check=True)
    assert json.loads(index_path.read_text()) == index
    assert multihost.cli("plan").returncode == 0

    # An entry naming a file outside the lab dir: never removed, never fatal, dropped.
    precious = multihost.host("app").root / "precious.txt"
    precious.write_text("not blumeops's\n")
    index_path.write_text(json.dumps({**index, "web:gone.txt": str(precious)}))
    plan = multihost.cli("plan")
    assert "- delete" not in plan.stdout and "0 to delete" in plan.stdout, plan.stdout
    assert "outside the lab dir (ignored, dropped by apply): web:gone.txt" in plan.stdout
    first = multihost.cli("apply", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert precious.read_text() == "not blumeops's\n"
    assert json.loads(index_path.read_text()) == index
    again = multihost.cli("apply", "--yes")
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


def test_a_file_secret_deleted_on_the_host_is_delivered_again(multihost: MultiLab) -> None:
    multihost.run("secret", "set", str(multihost.lab), "multihost/store-key", "--value",
                  "key-one", check=True)
    edit(multihost, '    secrets: {STORE_TOKEN: "vault:multihost/store-token"}\n',
         '    secrets:\n      STORE_TOKEN: "vault:multihost/store-token"\n'
         '      STORE_KEY: {ref: "vault:multihost/store-key", file: keys/store.key}\n')
    multihost.cli("apply", "--yes", check=True)
    state = multihost.remote_state("data")
    key = state / "lab" / "keys" / "store.key"
    index_path = state / "secrets" / "files.json"
    index = {"store:STORE_KEY": str(key)}
    assert key.read_text() == "key-one" and json.loads(index_path.read_text()) == index

    key.unlink()
    pid = services(multihost)["store"]["pid"]
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "secret file missing on the host: STORE_KEY" in \
        plan.stdout, plan.stdout + plan.stderr
    assert "key-one" not in plan.stdout + plan.stderr
    multihost.cli("apply", "--yes", check=True)
    assert key.read_text() == "key-one" and key.stat().st_mode & 0o777 == 0o600
    assert services(multihost)["store"]["pid"] != pid  # restarted: it reads the file anew
    assert multihost.cli("plan").returncode == 0

    # A damaged secret index: the files are delivered again and the index rebuilt.
    index_path.write_text("[]")
    plan = multihost.cli("plan")
    assert plan.returncode == 2 and "index of them is damaged" in plan.stdout, plan.stdout
    multihost.cli("apply", "--yes", check=True)
    assert json.loads(index_path.read_text()) == index
    assert multihost.cli("plan").returncode == 0

    # An entry naming a file outside the lab dir does not fail every later apply.
    precious = multihost.host("data").root / "precious.txt"
    precious.write_text("not blumeops's\n")
    index_path.write_text(json.dumps({**index, "store:OLD": str(precious)}))
    multihost.run("secret", "set", str(multihost.lab), "multihost/store-key", "--value",
                  "key-two", check=True)
    for _ in range(2):
        out = multihost.cli("apply", "--yes")
        assert out.returncode == 0, out.stdout + out.stderr
        time.sleep(0.2)
    assert key.read_text() == "key-two"
    assert precious.read_text() == "not blumeops's\n"


def test_a_unit_hosts_deleted_file_secret_is_delivered_again(units: UnitLab) -> None:
    """The same on a systemd host (its systemctl the TEST DOUBLE of tests/drivers/doubles,
    as in test_multihost_managers_gaps.py): the unit is restarted with its file back."""
    done = subprocess.run([sys.executable, "-m", "blumeops", "secret", "set", str(units.lab),
                           "units/api-key", "--value", "unit-key"], env=units.env,
                          cwd=units.root, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    write(units, '{ref: "vault:units/api-key", file: keys/api.key}')
    first = units.cli("apply", "--yes")
    assert "api: healthy" in first.stderr, first.stdout + first.stderr
    key = units.hosts["linbox"].root / ".local/state/blumeops/lab/keys/api.key"
    assert key.read_text() == "unit-key"

    key.unlink()
    plan = units.cli("plan")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "secret file missing on the host: API_KEY" in plan.stdout, plan.stdout
    again = units.cli("apply", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert key.read_text() == "unit-key" and key.stat().st_mode & 0o777 == 0o600
    assert status(units)["api"] == ("Healthy", "exit 0 on linbox")
    assert units.cli("plan").returncode == 0
