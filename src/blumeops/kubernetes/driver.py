"""Drivers of a cluster: `k8s@CLUSTER` (its manifests, its health) and `argocd@CLUSTER`
(the Applications blumeops writes to the deploy branch).

How the plan sees a cluster depends on its delivery:

- `delivery: apply`: each manifest is sent to the API server as a server-side dry run
  (field manager `blumeops`) and compared with the live object; objects labelled as this
  lab's that the catalog no longer renders are deletes (prune). Apply applies what the
  plan changed, in waves, and deletes those. Health: each service's workloads and pods.
- `delivery: argocd` with a deploy branch: the files blumeops owns on the branch's tip
  are the live state, so the plan is the deploy branch's diff; apply writes one deploy
  commit (both drivers share it) naming the lab's source commit. Health: ArgoCD's sync
  and health of each Application (a service's own, and the app-of-apps as target rows).

Both drivers of one cluster share what they read through `ctx.runtime` (a dict per
session): one fetch of the branch, one client, one list of Applications per command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth, TargetHealth
from blumeops.core.plan import Change, Live
from blumeops.core.resources import Resource
from blumeops.core.spec import ClusterSpec, TargetUnavailable
from blumeops.drivers.base import ApiDriver, Secrets

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.kubernetes.apply import KubeDelivery
    from blumeops.kubernetes.hydrate import DeployTarget, Hydrator
    from blumeops.kubernetes.manifests import LiveObject, Manifest

_HTTP_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2")
HOOK_NOTE = "written by the controller after each sync (see its `delivered` events)"


class _ClusterDriver(ApiDriver):
    """What both drivers of a cluster need: its spec, what they share, its deploy branch."""

    @property
    def cluster(self) -> ClusterSpec:
        return self.ctx.spec.clusters[self.ctx.name]

    @property
    def shared(self) -> dict[str, Any]:
        shared: dict[str, Any] = self.ctx.runtime
        return shared

    # -- the deploy branch (argocd) ----------------------------------------------------------

    def _deploy(self) -> tuple[DeployTarget, Hydrator]:
        # lazy: keeps pydantic out of start-up
        from blumeops.kubernetes.hydrate import DeployTarget, Hydrator, cache_dir

        c = self.cluster
        assert c.repo_url and c.deploy_branch
        target = DeployTarget(c.name, c.repo_url, c.deploy_branch, c.path)
        return target, Hydrator(target, cache_dir(self.ctx.state_dir, target))

    def _branch(self) -> dict[str, str]:
        """Path -> text of what blumeops owns on the deploy branch's tip (fetched once)."""
        if "branch" not in self.shared:
            # lazy: keeps pydantic out of start-up
            from blumeops.kubernetes.hydrate import HydrateError

            _, hydrator = self._deploy()
            try:
                tip = hydrator.fetch()
                self.shared["branch"] = hydrator.owned_files(tip) if tip else {}
            except HydrateError as exc:
                raise TargetUnavailable(str(exc)) from None
        branch: dict[str, str] = self.shared["branch"]
        return branch

    def _observe_branch(self) -> dict[str, Live]:
        """This driver's files on the deploy branch, by resource id; files blumeops owns
        there that the catalog no longer renders are deletes."""
        if self.ctx.spec.controller:
            return {r.id: Live("", skip=HOOK_NOTE) for r in self.resources}
        target, _ = self._deploy()
        conflict = self._own_branch()
        if conflict is not None and "conflict-said" not in self.shared:
            self.shared["conflict-said"] = True
            self.ctx.notes.append(f"apply will not write the deploy branch: {conflict}")
        files = self._branch()
        live: dict[str, Live] = {}
        rendered = set()
        for res in self.resources:
            path = target.prefix(res.path)
            rendered.add(path)
            if path in files:
                live[res.id] = Live(files[path])
        top = target.prefix("kubernetes" if self.kind == "k8s" else "argocd", self.cluster.name)
        for path in sorted(set(files) - rendered):
            if path.startswith(top + "/"):
                live[self._file_id(path, files[path])] = Live(
                    files[path], reason=f"no longer rendered: removed from "
                                        f"{target.branch}:{path}")
        return live

    def _file_id(self, path: str, text: str) -> str:
        """A branch file's resource id, from the object it holds (as render names it)."""
        import yaml

        try:
            doc = yaml.safe_load(text)
            meta = doc["metadata"]
            name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else \
                str(meta["name"])
            return f"{self.target}/{doc['kind']}/{name}"
        except (yaml.YAMLError, TypeError, KeyError):
            return f"{self.target}/file/{path}"

    def _own_branch(self) -> str | None:
        """The deploy branch is the lab checkout's own branch (checked once per command):
        `apply` refuses it, as the controller's hook does."""
        if "conflict" not in self.shared:
            # lazy: keeps pydantic, httpx out of start-up
            from blumeops.kubernetes.deliver import own_branch_conflict

            target, _ = self._deploy()
            self.shared["conflict"] = own_branch_conflict(self.shared["lab_file"], [target])
        conflict: str | None = self.shared["conflict"]
        return conflict

    def _hydrate(self) -> str | None:
        """Write the deploy commit for every file of the cluster, once per command;
        returns the error, if any."""
        if "hydrated" in self.shared:
            error: str | None = self.shared["hydrated"]
            return error
        # lazy: keeps pydantic, httpx out of start-up
        from blumeops.core.errors import DeliveryError
        from blumeops.kubernetes.deliver import source_commit

        # lazy: keeps pydantic out of start-up
        from blumeops.kubernetes.hydrate import HydrateError, deploy_files

        conflict = self._own_branch()
        if conflict is not None:  # refused before anything is fetched or written
            self.shared["hydrated"] = f"deploy branch not written: {conflict}"
            return str(self.shared["hydrated"])
        target, hydrator = self._deploy()
        mine = [r for r in self.ctx.spec.desired if r.target in (
            f"k8s@{self.cluster.name}", f"argocd@{self.cluster.name}")]
        try:
            sha, subject = source_commit(self.shared["lab_file"])
            result = hydrator.hydrate(deploy_files(mine, target), sha, subject)
            self.shared["hydrated"] = None
            self.ctx.notes.append(result.summary())
        except (DeliveryError, HydrateError) as exc:
            self.shared["hydrated"] = f"deploy branch not written: {exc}"
        error = self.shared["hydrated"]
        return error

    def _apply_branch(self, changes: Sequence[Change]) -> dict[str, str]:
        error = self._hydrate()
        return {c.id: error for c in changes} if error else {}


class KubeDriver(_ClusterDriver):
    """`k8s@CLUSTER`: the cluster's manifests and the health of what runs from them."""

    kind = "k8s"
    order = 40
    manages_services = True  # a Kubernetes service's health is this driver's to say

    @property
    def kube(self) -> KubeDelivery:
        if "kube" not in self.shared:
            # lazy: keeps PyYAML out of start-up
            from blumeops.kubernetes.apply import KubeDelivery

            self.shared["kube"] = KubeDelivery(self.ctx.spec.lab, self.cluster.context)
        kube: KubeDelivery = self.shared["kube"]
        return kube

    def _argocd_kube(self) -> KubeDelivery:
        """The cluster holding this cluster's Applications: its own, or the one whose
        ArgoCD delivers it (`delivered_by`)."""
        context = self.cluster.argocd_context or self.cluster.context
        if context == self.cluster.context:
            return self.kube
        if "argokube" not in self.shared:
            # lazy: keeps PyYAML out of start-up
            from blumeops.kubernetes.apply import KubeDelivery

            self.shared["argokube"] = KubeDelivery(self.ctx.spec.lab, context)
        kube: KubeDelivery = self.shared["argokube"]
        return kube

    def _manifests(self) -> list[tuple[Resource, Manifest]]:
        import yaml

        # lazy: keeps PyYAML out of start-up
        from blumeops.kubernetes.manifests import Manifest

        return [(r, Manifest(yaml.safe_load(r.body), r.service, r.depends_on, r.path))
                for r in self.resources]

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A call to the API server; an unreachable or unreadable cluster is Unknown."""
        # lazy: keeps PyYAML out of start-up
        from blumeops.kubernetes.apply import KubeError

        try:
            return fn(*args, **kwargs)
        except KubeError as exc:
            raise TargetUnavailable(str(exc)) from None
        except Exception as exc:
            # lightkube's HTTP client (httpx2) failing to connect, time out, read.
            if not isinstance(exc, OSError) and not any(
                    c.__module__.partition(".")[0] in _HTTP_MODULES for c in type(exc).__mro__):
                raise
            raise TargetUnavailable(f"cannot reach the API server of context "
                                    f"{self.cluster.context!r}: {exc or type(exc).__name__}"
                                    ) from None

    def observe(self, answers: Sequence[Any]) -> dict[str, Live]:
        if self.cluster.delivery != "apply":
            return self._observe_branch() if self.cluster.deploys else {}
        pairs = self._manifests()
        ids = {m.key: r.id for r, m in pairs}
        changes = self._call(self.kube.plan, [m for _, m in pairs], prune=True)
        live: dict[str, Live] = {}
        doomed: dict[str, LiveObject] = {}
        # lazy: keeps PyYAML out of start-up
        from blumeops.kubernetes.manifests import LiveObject

        for c in changes:
            if c.action == "delete":
                rid = f"{self.target}/{c.kind}/{c.namespace + '/' if c.namespace else ''}{c.name}"
                live[rid] = Live("", diff="", reason="no longer in the catalog (labelled as "
                                                     "this lab's: pruned)")
                doomed[rid] = LiveObject(c.api_version, c.kind, c.name, c.namespace, {})
            elif c.error:
                live[ids[c.key]] = Live("", diff="", reason=c.error)
            elif c.action == "update":
                live[ids[c.key]] = Live("", diff=c.diff,
                                        reason="the server-side dry run differs from the "
                                               "live object")
            elif c.action == "unchanged":
                live[ids[c.key]] = Live("", diff="")
        self.shared["doomed"] = doomed
        return live

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        if self.cluster.delivery != "apply":
            return self._apply_branch(changes)
        by_id = {r.id: m for r, m in self._manifests()}
        doomed = self.shared.get("doomed", {})
        wanted = [by_id[c.id] for c in changes if c.desired is not None and c.id in by_id]
        # lazy: keeps PyYAML out of start-up
        from blumeops.kubernetes.manifests import FIRST_KINDS

        # Workloads before the Namespaces holding them (which would take them along).
        gone = sorted((doomed[c.id] for c in changes if c.desired is None and c.id in doomed),
                      key=lambda o: (o.kind in FIRST_KINDS, o.key))
        results = self._call(self.kube.apply_objects, wanted, gone)
        keys = {**{m.key: rid for rid, m in by_id.items()},
                **{o.key: rid for rid, o in doomed.items()}}
        errors = {keys[r.key]: r.message or "refused" for r in results if not r.ok}
        for c in changes:
            if c.desired is None and c.id not in doomed:
                errors[c.id] = "not found among this lab's objects: plan again"
        return errors

    # -- health ------------------------------------------------------------------------------

    def _applications(self) -> dict[str, tuple[Health, str]]:
        if "apps" not in self.shared:
            self.shared["apps"] = self._call(self._argocd_kube().applications)
        apps: dict[str, tuple[Health, str]] = self.shared["apps"]
        return apps

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        spec = self.ctx.spec.services
        out: dict[str, ServiceHealth] = {}
        if self.cluster.delivery == "apply":
            wanted = set(services)
            mine = [m for _, m in self._manifests() if m.service in wanted]
            jobs = {n: job for n in wanted if (job := spec[n].job) is not None}
            for name, v in self._call(self.kube.verdicts, mine, jobs).items():
                out[name] = ServiceHealth(name, v.health, v.detail, urls=spec[name].urls,
                                          job=v.run)
            for name in services:
                out.setdefault(name, ServiceHealth(name, Health.missing, "no objects rendered",
                                                   urls=spec[name].urls))
            return out
        apps = self._applications()
        by_service = {svc: app for app, svc in self.cluster.apps.items() if svc}
        for name in services:
            app = by_service.get(name)
            if app is None:
                out[name] = ServiceHealth(name, Health.unknown, "no ArgoCD Application",
                                          urls=spec[name].urls)
            elif app not in apps:
                out[name] = ServiceHealth(name, Health.missing, f"Application {app} not in "
                                          "the cluster (is the app-of-apps applied?)",
                                          urls=spec[name].urls)
            else:
                health, detail = apps[app]
                out[name] = ServiceHealth(name, health, f"Application {app}: {detail}",
                                          "argocd", urls=spec[name].urls)
        return out

    def target_health(self) -> list[TargetHealth]:
        """ArgoCD's Applications that belong to no service (the app-of-apps, the
        cluster-wide one): the services' own are their health rows."""
        if self.cluster.delivery == "apply":
            return []
        apps = self._applications()
        rows = []
        for app, svc in sorted(self.cluster.apps.items()):
            if svc is not None:
                continue
            health, detail = apps.get(app, (Health.missing, "not in the cluster"))
            rows.append(TargetHealth(f"argocd@{self.cluster.name}", app, health, detail))
        return rows


class ArgoDriver(_ClusterDriver):
    """`argocd@CLUSTER`: the Applications on the deploy branch (one commit with the
    manifests: the k8s driver's apply and this one's write it once)."""

    kind = "argocd"
    order = 41

    def observe(self, answers: Sequence[Any]) -> dict[str, Live]:
        return self._observe_branch()

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        return self._apply_branch(changes)
