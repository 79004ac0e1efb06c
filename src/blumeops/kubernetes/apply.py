"""Direct delivery (`delivery: apply`), the I/O part: server-side apply with lightkube.

Driver-shaped: `observe` lists this lab's live objects, `plan` asks the API server for a
server-side dry run of every manifest and diffs it against the live object, `apply` applies
wave by wave with field manager `blumeops` (forcing conflicts: the catalog owns these
fields) and prunes what `kube.prune_selection` allows, `health` judges each service with
`kube.object_health`, `applications` reads ArgoCD's verdicts. lightkube is imported only
here, and only when a cluster is reached.

No Kubernetes API server runs where this was built: the pure parts are unit-tested and
this module is exercised by tests/delivery/test_kube_live.py when KUBECONFIG is set.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import yaml

from blumeops.core.health import Health, worst
from blumeops.kubernetes.manifests import (
    FIELD_MANAGER,
    JOB_NAME_LABEL,
    LEGACY_JOB_NAME_LABEL,
    NAME_LABEL,
    LiveObject,
    Manifest,
    cronjob_health,
    exit_code,
    job_outcome,
    object_health,
    owned,
    owned_jobs,
    prune_selection,
    selector,
    service_health,
    waves,
)

if TYPE_CHECKING:
    from blumeops.core.health import JobRun
    from blumeops.core.spec import JobSpec

ARGOCD_NAMESPACE = "argocd"
# Kinds render.kubernetes makes: listed for pruning even when none is rendered any more.
RENDERED_KINDS = (("v1", "Namespace"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                  ("apps/v1", "DaemonSet"), ("batch/v1", "CronJob"),
                  ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
                  ("networking.k8s.io/v1", "Ingress"))
_VOLATILE_META = ("managedFields", "resourceVersion", "uid", "generation",
                  "creationTimestamp", "selfLink")


class KubeError(Exception):
    """The cluster could not be reached or refused something; the message says why."""


@dataclass(frozen=True)
class KubeChange:
    action: Literal["create", "update", "delete", "unchanged"]
    key: str
    kind: str
    name: str
    namespace: str | None
    service: str | None
    diff: str
    error: str = ""  # the server refused its dry run: apply would fail the same way
    api_version: str = ""  # of a delete: the version it was listed (and is deleted) by

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    """A service's health in the cluster, and a scheduled one's last and next run."""

    health: Health
    detail: str
    run: JobRun | None = None


@dataclass(frozen=True)
class ItemResult:
    key: str
    action: str
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """An object without what the server writes on its own (for a readable diff)."""
    if doc is None:
        return None
    out = {k: v for k, v in doc.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for key in _VOLATILE_META:
        meta.pop(key, None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != "kubectl.kubernetes.io/last-applied-configuration"}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def object_diff(live: dict[str, Any] | None, desired: dict[str, Any] | None, name: str) -> str:
    a = yaml.safe_dump(clean(live), sort_keys=True) if live else ""
    b = yaml.safe_dump(clean(desired), sort_keys=True) if desired else ""
    return "".join(difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                        f"{name} (live)", f"{name} (server-side dry run)"))


class KubeDelivery:
    """One cluster of one lab, reached through a kubeconfig context."""

    def __init__(self, lab: str, context: str, client: Any = None) -> None:
        self.lab = lab
        self.context = context
        self._client = client
        self._generic_loaded = False

    # -- reaching the cluster ------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from lightkube import Client
            from lightkube.config.kubeconfig import KubeConfig
            from lightkube.core.exceptions import ConfigError

            try:
                config = KubeConfig.from_env().get(context_name=self.context)
            except ConfigError as exc:
                raise KubeError(f"kubeconfig context {self.context!r}: {exc}") from None
            if config is None:
                raise KubeError(f"no kubeconfig context {self.context!r} (set KUBECONFIG "
                                "or fix clusters.*.context)")
            self._client = Client(config=config, field_manager=FIELD_MANAGER)
        return self._client

    def _type(self, api_version: str, kind: str) -> Any:
        from lightkube.core.exceptions import LoadResourceError
        from lightkube.core.resource_registry import resource_registry
        from lightkube.generic_resource import load_in_cluster_generic_resources

        try:  # built-in kinds load from lightkube's models
            found = resource_registry.load(api_version, kind)
        except LoadResourceError:
            found = None
        if found is None and not self._generic_loaded:
            load_in_cluster_generic_resources(self.client)  # CRDs the cluster knows
            self._generic_loaded = True
            found = resource_registry.get(api_version, kind)
        if found is None:
            raise KubeError(f"the cluster does not know {kind} ({api_version}): install "
                            "its CustomResourceDefinition first")
        return found

    def _knows(self, m: Manifest) -> bool:
        try:
            self._type(m.api_version, m.kind)
        except KubeError:
            return False
        return True

    def _obj(self, m: Manifest) -> Any:
        from lightkube import codecs

        self._type(m.api_version, m.kind)
        return codecs.from_dict(m.doc)

    def _get(self, api_version: str, kind: str, name: str,
             namespace: str | None) -> dict[str, Any] | None:
        from lightkube.core.exceptions import ApiError

        res = self._type(api_version, kind)
        try:
            obj = self.client.get(res, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise KubeError(f"cannot read {kind}/{name}: {exc.status.message}") from None
        return _to_dict(obj)

    # -- the driver verbs ------------------------------------------------------------------

    def observe(self, desired: list[Manifest]) -> list[LiveObject]:
        """This lab's live objects, of every kind it renders (one list call per kind)."""
        kinds = dict.fromkeys([*RENDERED_KINDS, *((m.api_version, m.kind) for m in desired)])
        out: list[LiveObject] = []
        for api_version, kind in kinds:
            try:
                res = self._type(api_version, kind)
            except KubeError:  # a kind whose CRD is not installed yet: none of it exists
                continue
            from lightkube import ALL_NS
            from lightkube.core.resource import NamespacedResource

            kwargs: dict[str, Any] = {"labels": selector(self.lab)}
            if issubclass(res, NamespacedResource):
                kwargs["namespace"] = ALL_NS
            out.extend(LiveObject.from_doc(_to_dict(o)) for o in self.client.list(res, **kwargs))
        return [o for o in out if owned(o.labels, self.lab)]

    def plan(self, desired: list[Manifest], prune: bool = True) -> list[KubeChange]:
        """Each manifest against the server's dry run of it; deletes for pruned objects."""
        from lightkube.core.exceptions import ApiError

        changes: list[KubeChange] = []
        new_namespaces: set[str] = set()
        for m in desired:
            try:
                live = self._get(m.api_version, m.kind, m.name, m.namespace)
            except KubeError:  # a kind whose CRD this very plan would apply first
                live = None
            if live is None and m.kind == "Namespace":
                new_namespaces.add(m.name)
            if live is None and (m.kind == "Namespace" or m.namespace in new_namespaces
                                 or not self._knows(m)):
                # Nothing to dry-run against yet (its namespace or CRD comes first).
                changes.append(KubeChange("create", m.key, m.kind, m.name, m.namespace,
                                          m.service, object_diff(None, m.doc,
                                                                 f"{m.kind}/{m.name}")))
                continue
            try:
                dry = _to_dict(self.client.apply(self._obj(m), field_manager=FIELD_MANAGER,
                                                 force=True, dry_run=True))
            except ApiError as exc:  # this object only: the rest is still planned
                changes.append(KubeChange("create" if live is None else "update", m.key,
                                          m.kind, m.name, m.namespace, m.service, "",
                                          f"the server refused its dry run: "
                                          f"{exc.status.message}"))
                continue
            diff = object_diff(live, dry, f"{m.kind}/{m.name}")
            action: Literal["create", "update", "unchanged"] = (
                "create" if live is None else "update" if diff else "unchanged")
            changes.append(KubeChange(action, m.key, m.kind, m.name, m.namespace, m.service,
                                      diff))
        if prune:
            for o in prune_selection(self.observe(desired), desired, self.lab):
                changes.append(KubeChange("delete", o.key, o.kind, o.name, o.namespace,
                                          o.labels.get(NAME_LABEL), "",
                                          api_version=o.api_version))
        return changes

    def apply(self, desired: list[Manifest], prune: bool = True,
              wait: float = 0.0) -> list[ItemResult]:
        """Server-side apply in waves; optionally wait for each wave's services to be
        Healthy (up to `wait` seconds) before the next. One failure does not stop the rest."""
        doomed = prune_selection(self.observe(desired), desired, self.lab) if prune else []
        return self.apply_objects(desired, doomed, wait)

    def apply_objects(self, desired: list[Manifest], doomed: list[LiveObject],
                      wait: float = 0.0) -> list[ItemResult]:
        """Apply these manifests in waves, then delete these objects (the engine's apply:
        only what its plan changed)."""
        from lightkube.core.exceptions import ApiError

        results: list[ItemResult] = []
        for wave in waves(desired):
            for m in wave:
                try:
                    self.client.apply(self._obj(m), field_manager=FIELD_MANAGER, force=True)
                    results.append(ItemResult(m.key, "apply", True, "applied"))
                except (ApiError, KubeError) as exc:
                    message = exc.status.message if isinstance(exc, ApiError) else str(exc)
                    results.append(ItemResult(m.key, "apply", False, str(message or "")))
            self._generic_loaded = False  # CRDs applied in this wave are known next
            if wait > 0:
                self._wait(wave, wait)
        for o in doomed:
            try:
                self.client.delete(self._type(o.api_version, o.kind), o.name,
                                   namespace=o.namespace)
                results.append(ItemResult(o.key, "delete", True, "pruned"))
            except ApiError as exc:
                gone = exc.status.code == 404  # already gone (its namespace took it along)
                results.append(ItemResult(o.key, "delete", gone, "already gone" if gone
                                          else str(exc.status.message or "")))
        return results

    def _wait(self, wave: list[Manifest], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            healths = self.health(wave)
            if all(h is Health.healthy for h, _ in healths.values()):
                return
            time.sleep(1.0)

    def health(self, desired: list[Manifest]) -> dict[str, tuple[Health, str]]:
        """Each service's health: its objects', and its pods' (a crash loop is Degraded)."""
        return {name: (v.health, v.detail) for name, v in self.verdicts(desired).items()}

    def verdicts(self, desired: list[Manifest], jobs: Mapping[str, JobSpec] | None = None,
                 at: datetime | None = None) -> dict[str, Verdict]:
        """Each service's health and why; a scheduled service (`jobs`) is judged by its
        CronJob and newest Job as native jobs are, with its last and next run."""
        by_service: dict[str, list[dict[str, Any] | None]] = {}
        crons: dict[str, dict[str, Any] | None] = {}
        namespaces: dict[str, str] = {}
        for m in desired:
            if m.service is None or m.kind == "Namespace":
                continue
            live = self._get(m.api_version, m.kind, m.name, m.namespace)
            if m.kind == "CronJob" and jobs and m.service in jobs:
                crons[m.service] = live
            else:
                by_service.setdefault(m.service, []).append(live)
            if m.namespace:
                namespaces[m.service] = m.namespace
        out: dict[str, Verdict] = {}
        now = at or datetime.now(UTC)
        for service in dict.fromkeys([*by_service, *crons]):
            namespace = namespaces.get(service)
            pods = self._pods(service, namespace)
            run = None
            cron_verdict = None
            if service in crons and jobs:
                cronjob = crons[service]
                mine = owned_jobs(cronjob, self._jobs(namespace)) if cronjob is not None else []
                failed = None
                if mine and job_outcome(mine[-1]) == "failed":
                    failed = exit_code(self._job_pods(mine[-1], namespace))
                health, detail, run = cronjob_health(jobs[service], cronjob, mine, now, failed)
                cron_verdict = (health, detail)
                # Pods of finished Jobs are history, judged through their Job.
                running = {str(j["metadata"].get("name")) for j in mine
                           if job_outcome(j) == "running"}
                pods = [p for p in pods if _job_of(p) is None or _job_of(p) in running]
            objects = [*by_service.get(service, []), *pods]
            verdict = service_health(objects) if objects else None
            if cron_verdict is not None and (
                    verdict is None or worst([verdict[0], cron_verdict[0]]) is cron_verdict[0]):
                verdict = cron_verdict
            assert verdict is not None
            out[service] = Verdict(verdict[0], verdict[1], run)
        return out

    def _jobs(self, namespace: str | None) -> list[dict[str, Any]]:
        from lightkube.resources.batch_v1 import Job

        if namespace is None:
            return []
        return [_to_dict(j) for j in self.client.list(Job, namespace=namespace)]

    def _job_pods(self, job: dict[str, Any], namespace: str | None) -> list[dict[str, Any]]:
        from lightkube.resources.core_v1 import Pod

        name = str(job["metadata"].get("name"))
        for label in (JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL):
            pods = [_to_dict(p) for p in self.client.list(Pod, namespace=namespace,
                                                          labels={label: name})]
            if pods:
                return pods
        return []

    def _pods(self, service: str, namespace: str | None) -> list[dict[str, Any]]:
        from lightkube.resources.core_v1 import Pod

        if namespace is None:
            return []
        labels = {**selector(self.lab), NAME_LABEL: service}
        return [_to_dict(p) for p in self.client.list(Pod, namespace=namespace, labels=labels)]

    def applications(self) -> dict[str, tuple[Health, str]]:
        """ArgoCD's verdict on each of this lab's Applications (sync and health)."""
        res = self._type("argoproj.io/v1alpha1", "Application")
        apps = self.client.list(res, namespace=ARGOCD_NAMESPACE, labels=selector(self.lab))
        out = {}
        for app in apps:
            doc = _to_dict(app)
            out[str(doc["metadata"]["name"])] = object_health(doc)
        return out


def _job_of(pod: dict[str, Any]) -> str | None:
    """The Job a pod belongs to (its controller ownerReference), if any."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref.get("name"))
    return None


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is None:
        raise KubeError(f"unexpected object from the API: {type(obj).__name__}")
    data: dict[str, Any] = to_dict()
    return data
