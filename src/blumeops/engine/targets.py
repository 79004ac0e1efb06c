"""Targets reached through an API from this machine: each cluster (`k8s@CLUSTER`,
`argocd@CLUSTER`) and the tailnet (`tailscale@TAILNET`).

They join the engine as sessions beside the hosts' (engine/hosts.py), built from the same
driver registry, so `plan`, `apply`, `status`, the controller's API and its metrics see
them with no code of their own. What differs from a host:

- a target that cannot be read (no kubeconfig context, no Tailscale credentials, an API
  server that does not answer) is Unknown, with the reason, said once; its resources
  are left out of the plan, and nothing else fails because of it;
- a target has health of its own beyond services (an ArgoCD app-of-apps, the tailnet
  policy): `target_health` rows, in the same five words;
- `down` never touches it: stopping the lab's processes must not empty a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from blumeops.core.health import Health, ServiceHealth, TargetHealth
from blumeops.core.plan import Change, Live
from blumeops.core.resources import Resource
from blumeops.core.spec import ClusterSpec, HostSpec, RuntimeSpec, TailnetSpec, TargetUnavailable
from blumeops.drivers.base import ApiDriver, HostContext, Secrets
from blumeops.engine.hosts import HostSession

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth


class Runtime(Protocol):
    """What target sessions and their health need of engine/local.py's LocalRuntime."""

    spec: RuntimeSpec
    state_dir: Path
    lab_dir: Path
    lab_file: Path

    def unique_sessions(self) -> list[HostSession]: ...

    def service_health(self, names: list[str], started: dict[str, float]
                       ) -> dict[str, ServiceHealth]: ...


def _why(exc: Exception) -> str:
    """A reason to show: ours as is; anything else from an API client with its type (a
    cluster answering what its client cannot read must not end the plan)."""
    return str(exc) if isinstance(exc, TargetUnavailable) else f"{type(exc).__name__}: {exc}"


def target_specs(lab: Any, source: str, applied_hosts: set[str], notes: list[str]
                 ) -> tuple[dict[str, ClusterSpec], TailnetSpec | None, list[Resource]]:
    """The lab's clusters and tailnet, and the resources blumeops delivers to them (pure).

    A cluster named like a host blumeops applies is left out, with a note (their
    sessions would share a name): rename one to have it planned."""
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.model import Lab
    from blumeops.render import RenderContext, render_lab

    assert isinstance(lab, Lab)
    clusters = {n: c for n, c in lab.clusters.items() if n not in applied_hosts}
    notes += [f"cluster '{n}' has the name of a host blumeops applies: it is not planned "
              "nor read; rename one" for n in lab.clusters if n in applied_hosts]
    specs = {name: ClusterSpec(name, c.context, c.delivery, c.repo_url, c.deploy_branch,
                               c.path, _applications(lab, name),
                               lab.clusters[c.delivered_by].context if c.delivered_by
                               in lab.clusters else c.context)
             for name, c in clusters.items()}
    renderers = [r for r, wanted in (
        ("kubernetes", any(c.delivery == "apply" or c.deploys for c in specs.values())),
        ("argocd", any(c.deploys for c in specs.values())),
        ("tailscale", lab.tailnet is not None)) if wanted]
    rendered = render_lab(lab, RenderContext(source=source), only=tuple(renderers)) \
        if renderers else []

    def delivered(res: Resource) -> bool:
        kind, _, where = res.target.partition("@")
        spec = specs.get(where)
        if kind == "tailscale":
            return res.kind == "policy"
        if spec is None:
            return False
        return spec.deploys or (kind == "k8s" and spec.delivery == "apply")

    desired = [res for res in rendered if delivered(res)]
    tailnet = None
    if lab.tailnet is not None:
        t = lab.tailnet
        tailnet = TailnetSpec(t.name, t.push, t.api_key, t.oauth_client_id,
                              t.oauth_client_secret)
    return specs, tailnet, desired


def _applications(lab: Any, cluster: str) -> dict[str, str | None]:
    """ArgoCD Application -> its service (None: the app-of-apps, the cluster-wide one), as
    kubernetes/argocd.py names them, without rendering."""
    # lazy: keeps pydantic, PyYAML out of start-up
    from blumeops.kubernetes.argocd import cluster_app_name, renders_applications, root_app_name
    from blumeops.kubernetes.render import cluster_services

    spec = lab.clusters[cluster]
    if not renders_applications(lab, cluster, spec):
        return {}
    apps: dict[str, str | None] = {n: n for n, _ in cluster_services(lab, cluster)}
    if spec.secret_store is not None:
        apps[cluster_app_name(lab)] = None
    apps[root_app_name(lab)] = None
    return apps


# -- sessions ---------------------------------------------------------------------------------

class TargetSession(HostSession):
    """A cluster or the tailnet, in the engine's session shape (no transport, no host)."""

    def __init__(self, ctx: HostContext, resources: Sequence[Resource], kinds: Sequence[str],
                 label: str) -> None:
        super().__init__(ctx, resources, kinds)
        self.label = label  # "cluster minikube", "tailnet tail8d86e.ts.net"
        self.targets = {f"{k}@{ctx.name}" for k in kinds}
        self.unknown: str | None = None  # why it could not be read this run

    def _mark_unknown(self, why: str) -> None:
        if self.unknown is None:
            self.unknown = why
            self.ctx.notes.append(f"{self.label}: Unknown: {why}; its changes are not planned")

    def observe(self) -> dict[str, Live]:
        live: dict[str, Live] = {}
        try:
            for driver in self.ordered():
                live.update(driver.observe([]))
        except Exception as exc:
            self._mark_unknown(_why(exc))
        if self.unknown is not None:  # left out of the plan, not shown as creates
            return {r.id: Live("", skip=self.unknown)
                    for d in self.drivers.values() for r in d.resources}
        return live

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        errors: dict[str, str] = {}
        for driver in self.ordered():
            mine = [c for c in changes if c.target.partition("@")[0] == driver.kind]
            if not mine:
                continue
            try:
                errors.update(driver.apply(mine, secrets))
            except Exception as exc:
                errors.update({c.id: _why(exc) for c in mine})
        return errors

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        spec = self.ctx.spec.services
        out: dict[str, ServiceHealth] = {}
        if self.unknown is None:
            try:
                for driver in self.ordered():
                    if driver.manages_services:
                        out.update(driver.health(services, started))
            except Exception as exc:
                self._mark_unknown(_why(exc))
        for name in services:
            if name not in out:
                out[name] = ServiceHealth(name, Health.unknown,
                                          f"{self.label}: {self.unknown or 'not reported'}",
                                          urls=spec[name].urls)
        return out

    def target_health(self) -> list[TargetHealth]:
        rows: list[TargetHealth] = []
        if self.unknown is None:
            try:
                for driver in self.ordered():
                    if isinstance(driver, ApiDriver):
                        rows += driver.target_health()
            except Exception as exc:
                self._mark_unknown(_why(exc))
        if self.unknown is not None:
            return [TargetHealth(sorted(self.targets)[-1], "(all)", Health.unknown,
                                 self.unknown)]
        return rows

    def down(self) -> list[str]:
        return []  # `down` stops the lab's processes; a cluster or tailnet stays as it is

    def close(self) -> None:
        return None


def _load_lab(lab_file: Path) -> Any:
    """The catalog model of `lab_file`, or None when it no longer loads (a driver that
    must read the catalog again, the tailnet's offline tests, asks for it here)."""
    # lazy: keeps pydantic out of start-up
    from blumeops.lab.loader import load_lab

    return load_lab(lab_file).lab


def target_sessions(runtime: Runtime, taken: set[str]) -> dict[str, TargetSession]:
    """A session per cluster and for the tailnet, keyed as their targets' `@` part."""
    spec = runtime.spec
    out: dict[str, TargetSession] = {}
    wanted: list[tuple[str, tuple[str, ...], str]] = [
        (name, c.kinds, f"cluster {name}") for name, c in spec.clusters.items()]
    if spec.tailnet is not None:
        wanted.append((spec.tailnet.name, ("tailscale",), f"tailnet {spec.tailnet.name}"))
    for name, kinds, label in wanted:
        if name in taken:
            continue
        mine = [r for r in spec.desired if spec.host_of(r.target) == name
                and r.target_kind in kinds]
        # `runtime`: what the session's drivers share this command (a client, a fetch),
        # and the LocalRuntime (where secrets are read, the lab file).
        ctx = HostContext(HostSpec(name, True), spec, runtime.state_dir, runtime.lab_dir,
                          runtime={"lab_file": runtime.lab_file, "owner": runtime,
                                   "load_lab": _load_lab})
        out[name] = TargetSession(ctx, mine, kinds, label)
    return out


def target_health(runtime: Runtime) -> list[TargetHealth]:
    """Every target's own health rows (clusters, tailnet); none for a lab without them."""
    if not runtime.spec.clusters and runtime.spec.tailnet is None:
        return []
    return [row for s in runtime.unique_sessions() if isinstance(s, TargetSession)
            for row in s.target_health()]


def cluster_health(runtime: Runtime) -> dict[str, dict[str, tuple[Health, str]]]:
    """Per cluster: each of its services and its own rows (the app-of-apps), in the five
    words and why: what `status` shows of the clusters, read by the same sessions
    (engine/targets.py). An unreachable cluster is Unknown, with the reason."""
    spec = runtime.spec
    names = [n for n, svc in spec.services.items() if svc.host in spec.clusters]
    healths = runtime.service_health(names, {})
    out: dict[str, dict[str, tuple[Health, str]]] = {c: {} for c in spec.clusters}
    for name in names:
        h = healths[name]
        out[h.host][name] = (h.health, h.detail)
    for session in runtime.unique_sessions():
        if isinstance(session, TargetSession) and session.name in out:
            out[session.name].update({row.name: (row.health, row.detail)
                                      for row in session.target_health()})
    return out
