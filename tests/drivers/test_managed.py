"""The unit-manager adapter (drivers/managed.py) through the REAL managers, the REAL SSH
transport and a host session, against `systemctl` / `launchctl` TEST DOUBLES.

The doubles (tests/drivers/doubles/) record every call and keep unit state in files; they
are not systemd or launchd. What is real: sshd, the agent's batches, the managers, the
unit text the renderers make, and the round trips the engine pays.
"""

from __future__ import annotations

import json
import plistlib
from pathlib import Path

import pytest

from blumeops.catalog.model import Names, SecretRef, Service
from blumeops.core.plan import make_plan
from blumeops.core.resources import Resource
from blumeops.core.spec import HostSpec, RuntimeSpec, ServiceSpec
from blumeops.drivers.base import HostContext, driver_class
from blumeops.drivers.managed import AS_USER_ENV, LaunchdDriver, SystemdDriver
from blumeops.engine.hosts import HostSession
from blumeops.render import RenderContext
from blumeops.render import launchd as render_launchd
from blumeops.render import systemd as render_systemd
from drivers.test_launchd_double import install_double as install_launchctl
from drivers.test_systemd_double import SHOW, calls, forget
from drivers.test_systemd_double import install_double as install_systemctl
from transports.sshhost import (
    SshHost,
    SshLab,
    needs_sshd,
    ssh_lab_fixture,  # noqa: F401 (fixture "ssh_lab")
)

CANARY = "CANARY-managed-9f2c-do-not-leak"


def session(ssh_lab: SshLab, host: SshHost, kind: str, resources: list[Resource],
            state_dir: Path) -> HostSession:
    """A fresh session, as each CLI run makes one (state_dir survives between runs)."""
    names = sorted({r.name for r in resources} | {"app", "web"})
    services = {n: ServiceSpec(n, host.name, False, has_secrets=n == "app") for n in names}
    spec = RuntimeSpec("lab", (), None, (), services, (), (), tuple(resources))
    # The host is Linux without a running systemd: no facts check of the manager here
    # (tests/engine/test_multihost_managers.py runs that against a host double).
    hspec = HostSpec(host.name, False, ssh=host.name, address=host.address, os="linux")
    ctx = HostContext(hspec, spec, state_dir, state_dir, ssh_lab.transport(host.name),
                      "~/.local/state/blumeops/lab")
    return HostSession(ctx, resources, [kind])


def systemd_units() -> list[Resource]:
    app = Service(native="node", command=["/bin/sleep", "1"],
                  names=Names(systemd="my-app.service"),
                  secrets={"TOKEN": SecretRef(ref="vault:a/b")})
    web = Service(native="node", command=["/bin/sleep", "2"], depends_on=["app"])
    ctx = RenderContext()
    return [render_systemd.unit("app", app, "node", ctx),
            render_systemd.unit("web", web, "node", ctx)]


@needs_sshd
@pytest.mark.slow
def test_systemd_through_the_adapter_and_the_double(
        ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert driver_class("systemd", remote=True) is SystemdDriver
    # A root SSH user gets system units; here the test asks for user units so nothing
    # lands in this machine's /etc.
    monkeypatch.setenv(AS_USER_ENV, "1")
    host = ssh_lab.add_host("node")
    state = install_systemctl(host)
    units = host.root / ".config/systemd/user"
    resources = systemd_units()
    app_id = resources[0].id

    # First contact: observe (facts + the manager's look), then create both units with
    # the unit name the renderer chose (`names.systemd`) and the secret in its env file.
    first = session(ssh_lab, host, "systemd", resources, tmp_path)
    plan = make_plan(resources, first.observe())
    assert first.unreachable is None
    assert [c.action for c in plan.pending] == ["create", "create"]
    assert first.apply(plan.pending, {app_id: {"TOKEN": CANARY}}) == {}
    assert (units / "my-app.service").read_text() == resources[0].body
    assert (units / "blumeops-web.service").read_text() == resources[1].body
    assert not (units / "blumeops-app.service").exists()
    assert ["--user", "enable", "--now", "my-app.service", "blumeops-web.service"] \
        in calls(state)
    env = host.root / ".local/state/blumeops/secrets/app.env"
    assert env.read_text() == f'TOKEN="{CANARY}"\n' and env.stat().st_mode & 0o777 == 0o600
    assert CANARY not in (state / "calls.jsonl").read_text()

    # The next run: one round trip observes the host and also fills the health table.
    forget(state)
    before = host.sessions()
    again = session(ssh_lab, host, "systemd", resources, tmp_path)
    assert make_plan(resources, again.observe()).pending == []
    health = again.health(["app", "web"], {})
    assert host.sessions() - before == 1
    assert calls(state) == [["--user", *SHOW, "my-app.service", "blumeops-web.service"]]
    assert health["app"].state == "active" and health["app"].pid
    assert health["app"].health.value == "Unknown"  # running; no probe declared

    # Edited on the host: the plan shows the diff; apply restores it and restarts it.
    (units / "my-app.service").write_text(resources[0].body + "Nice=5\n")
    edited = session(ssh_lab, host, "systemd", resources, tmp_path)
    plan = make_plan(resources, edited.observe())
    assert [c.id for c in plan.pending] == [app_id] and "-Nice=5" in plan.pending[0].diff
    forget(state)
    assert edited.apply(plan.pending, {app_id: {"TOKEN": CANARY}}) == {}
    assert ["--user", "restart", "my-app.service"] in calls(state)
    assert (units / "my-app.service").read_text() == resources[0].body

    # Dropped from the catalog: found on the host by its name, disabled and deleted.
    kept = resources[:1]
    dropped = session(ssh_lab, host, "systemd", kept, tmp_path)
    plan = make_plan(kept, dropped.observe())
    assert [(c.action, c.id) for c in plan.pending] == [("delete", "systemd@node/unit/web")]
    forget(state)
    assert dropped.apply(plan.pending, {}) == {}
    assert ["--user", "disable", "--now", "blumeops-web.service"] in calls(state)
    assert not (units / "blumeops-web.service").exists()


def launchd_plist(host: SshHost, name: str, label: str | None = None) -> Resource:
    svc = Service(native="mac", command=["/bin/sleep", "3"], names=Names(launchd=label))
    data = render_launchd.plist_data(name, svc)
    text = json.dumps(data).replace(render_launchd.STATE_DIR, str(host.root / "state"))
    res = render_launchd.plist(name, svc, "mac")
    body = plistlib.dumps(json.loads(text), sort_keys=True).decode()
    return Resource(res.target, res.kind, res.name, body, res.path, service=name)


@needs_sshd
@pytest.mark.slow
def test_launchd_through_the_adapter_and_the_double(
        ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert driver_class("launchd", remote=True) is LaunchdDriver
    monkeypatch.setenv(AS_USER_ENV, "1")  # gui/UID under the host's HOME, not /Library
    host = ssh_lab.add_host("mac")
    state = install_launchctl(host)
    resources = [launchd_plist(host, "app", "org.example.app"), launchd_plist(host, "web")]
    first = session(ssh_lab, host, "launchd", resources, tmp_path)
    plan = make_plan(resources, first.observe())
    assert first.apply(plan.pending, {}) == {}
    agents = host.root / "Library/LaunchAgents"
    assert (agents / "org.example.app.plist").read_text() == resources[0].body
    boots = [c for c in calls(state) if c[0] == "bootstrap"]
    assert boots == [["bootstrap", "gui/0", str(agents / "org.example.app.plist")],
                     ["bootstrap", "gui/0", str(agents / "me.blumeops.web.plist")]]

    forget(state)
    before = host.sessions()
    again = session(ssh_lab, host, "launchd", resources, tmp_path)
    assert make_plan(resources, again.observe()).pending == []
    assert again.health(["app", "web"], {})["app"].state == "running"
    assert host.sessions() - before == 1
    assert calls(state) == [["print", "gui/0/org.example.app"],
                            ["print", "gui/0/me.blumeops.web"]]


def test_the_mode_follows_the_ssh_user(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """root: system units and LaunchDaemons; anyone else: user units and gui/UID."""
    monkeypatch.delenv(AS_USER_ENV, raising=False)
    spec = RuntimeSpec("lab", (), None, (), {}, (), (), ())
    ctx = HostContext(HostSpec("h", False, ssh="h"), spec, tmp_path, tmp_path,
                      object(), "~/x")  # type: ignore[arg-type]
    systemd, launchd = SystemdDriver(ctx, []), LaunchdDriver(ctx, [])
    assert systemd.make_manager("root", 0).user_mode is False
    assert systemd.make_manager("alice", 501).user_mode is True
    assert launchd.make_manager("root", 0).domain == "system"
    assert launchd.make_manager("alice", 501).domain == "gui/501"
    with pytest.raises(ValueError, match="uid"):
        launchd.make_manager("alice", None)

