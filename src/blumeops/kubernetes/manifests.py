"""Direct delivery (`delivery: apply`), the pure part: what to apply in which order, what
may be pruned, and the health of live objects in the five words.

No I/O here: `kubeapply` feeds these functions what the API server returns. Ownership is
ApplySet-style, by the labels `render.kubernetes` puts on every object: only an object
carrying both `app.kubernetes.io/managed-by: blumeops` and `blumeops.dev/lab: LAB` is
ever pruned, so nothing another tool (or another lab) made is touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml

from blumeops.core.health import Health, JobRun, worst
from blumeops.core.jobs import judge
from blumeops.core.resources import Resource
from blumeops.core.schedule import next_run, parse_cron

if TYPE_CHECKING:
    from blumeops.core.health import JobRun
    from blumeops.core.spec import JobSpec

MANAGED_BY = "app.kubernetes.io/managed-by"
LAB_LABEL = "blumeops.dev/lab"
NAME_LABEL = "app.kubernetes.io/name"
FIELD_MANAGER = "blumeops"
# Applied before anything else: what later objects live in or are made of.
FIRST_KINDS = ("Namespace", "CustomResourceDefinition")
# Pod states that will not fix themselves: Degraded now, not after a progress deadline.
STUCK_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                           "CreateContainerConfigError", "CreateContainerError",
                           "InvalidImageName", "RunContainerError"})

Doc = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One object to apply, with where it came from."""

    doc: Doc
    service: str | None
    depends_on: tuple[str, ...]
    path: str

    @property
    def api_version(self) -> str:
        return str(self.doc["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.doc["metadata"].get("namespace")
        return str(ns) if ns else None

    @property
    def key(self) -> str:
        return object_key(self.api_version, self.kind, self.namespace, self.name)


def object_key(api_version: str, kind: str, namespace: str | None, name: str) -> str:
    """`group/Kind/namespace/name`: the version drops out (one object, many versions)."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return f"{group}/{kind}/{namespace or ''}/{name}"


def manifests(resources: Iterable[Resource], cluster: str) -> list[Manifest]:
    """The cluster's rendered objects, parsed back from their YAML bodies."""
    target = f"k8s@{cluster}"
    return [Manifest(yaml.safe_load(r.body), r.service, r.depends_on, r.path)
            for r in resources if r.target == target]


def waves(items: list[Manifest]) -> list[list[Manifest]]:
    """Apply order: Namespaces and CRDs; then each service after those it depends on
    (services at the same depth together); then objects of no service (cluster-wide ones
    such as the ClusterSecretStore, whose CRD an operator service installs)."""
    services = {m.service: m.depends_on for m in items if m.service is not None}
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        if name in seen:  # cycles are rejected by the catalog; never loop here
            return 0
        deps = [d for d in services.get(name, ()) if d in services]
        depth[name] = 1 + max((level(d, seen | {name}) for d in deps), default=-1)
        return depth[name]

    first = [m for m in items if m.kind in FIRST_KINDS]
    rest = [m for m in items if m.kind not in FIRST_KINDS]
    levels: dict[int, list[Manifest]] = {}
    loose: list[Manifest] = []
    for m in rest:
        if m.service is None:
            loose.append(m)
        else:
            levels.setdefault(level(m.service), []).append(m)
    out = [first] if first else []
    out.extend(levels[i] for i in sorted(levels))
    if loose:
        out.append(loose)
    return out


@dataclass(frozen=True)
class LiveObject:
    """What the API server holds: enough to decide ownership and to delete it."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    labels: Mapping[str, str]

    @property
    def key(self) -> str:
        return object_key(self.api_version, self.kind, self.namespace, self.name)

    @classmethod
    def from_doc(cls, doc: Doc) -> LiveObject:
        meta = doc.get("metadata") or {}
        return cls(str(doc.get("apiVersion", "")), str(doc.get("kind", "")),
                   str(meta.get("name", "")), meta.get("namespace") or None,
                   dict(meta.get("labels") or {}))


def owned(labels: Mapping[str, str], lab: str) -> bool:
    return labels.get(MANAGED_BY) == "blumeops" and labels.get(LAB_LABEL) == lab


def selector(lab: str) -> dict[str, str]:
    """The label selector listing this lab's objects (the server-side filter)."""
    return {MANAGED_BY: "blumeops", LAB_LABEL: lab}


def prune_selection(live: Iterable[LiveObject], desired: Iterable[Manifest],
                    lab: str) -> list[LiveObject]:
    """Objects to delete: this lab's own, no longer rendered. Workloads before the
    Namespaces and CRDs that hold them; everything else is left alone."""
    wanted = {m.key for m in desired}
    doomed = [o for o in live if owned(o.labels, lab) and o.key not in wanted]
    return sorted(doomed, key=lambda o: (o.kind in FIRST_KINDS, o.key))


# -- health ---------------------------------------------------------------------------------

def _conditions(status: Doc) -> dict[str, Doc]:
    return {str(c.get("type")): c for c in status.get("conditions") or []}


def _generation_seen(obj: Doc) -> bool:
    gen = (obj.get("metadata") or {}).get("generation")
    seen = (obj.get("status") or {}).get("observedGeneration")
    return gen is None or (seen is not None and seen >= gen)


def object_health(obj: Doc | None) -> tuple[Health, str]:
    """One live object's health and why, as `kubectl rollout status` and ArgoCD judge it."""
    if obj is None:
        return Health.missing, "not found in the cluster"
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet") and not _generation_seen(obj):
        return Health.progressing, "waiting for the controller to observe the new spec"
    if kind == "Deployment":
        cond = _conditions(status).get("Progressing", {})
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return Health.degraded, str(cond.get("message") or "progress deadline exceeded")
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        if updated < want:
            return Health.progressing, f"{updated} of {want} replicas updated"
        if status.get("replicas", 0) > updated:
            return Health.progressing, (f"{status.get('replicas', 0) - updated} old "
                                        "replicas pending termination")
        available = status.get("availableReplicas", 0)
        if available < updated:
            return Health.progressing, f"{available} of {updated} updated replicas available"
        return Health.healthy, f"{available}/{want} available"
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if (spec.get("updateStrategy") or {}).get("type") == "OnDelete":
            return Health.healthy, "OnDelete update strategy: not tracked"
        ready = status.get("readyReplicas", 0)
        if ready < want:
            return Health.progressing, f"{ready} of {want} pods ready"
        partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get(
            "partition", 0)
        if partition == 0 and status.get("currentRevision") != status.get("updateRevision"):
            return Health.progressing, "rolling update in progress"
        return Health.healthy, f"{ready}/{want} ready"
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        updated = status.get("updatedNumberScheduled", 0)
        if updated < want:
            return Health.progressing, f"{updated} of {want} pods updated"
        available = status.get("numberAvailable", 0)
        if available < want:
            return Health.progressing, f"{available} of {want} pods available"
        return Health.healthy, f"{available}/{want} available"
    if kind == "Job":
        conds = _conditions(status)
        if conds.get("Failed", {}).get("status") == "True":
            c = conds["Failed"]
            return Health.degraded, f"{c.get('reason', 'Failed')}: {c.get('message', '')}"
        if conds.get("Complete", {}).get("status") == "True":
            return Health.healthy, f"complete ({status.get('succeeded', 0)} succeeded)"
        return Health.progressing, f"{status.get('active', 0)} active"
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase")
        if phase == "Bound":
            return Health.healthy, "Bound"
        if phase == "Lost":
            return Health.degraded, "Lost: its volume is gone"
        return Health.progressing, f"{phase or 'Pending'}: waiting for a volume"
    if kind == "Pod":
        return pod_health(obj)
    if kind == "Application":
        return application_health(obj)
    ready = _conditions(status).get("Ready")
    if ready is not None and ready.get("status") == "False":  # ExternalSecret and friends
        return Health.degraded, str(ready.get("message") or ready.get("reason") or "not ready")
    return Health.healthy, "exists"


def pod_health(pod: Doc) -> tuple[Health, str]:
    status = pod.get("status") or {}
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return Health.degraded, (f"container {cs.get('name')}: {waiting['reason']}"
                                     + (f" ({cs.get('restartCount')} restarts)"
                                        if cs.get("restartCount") else ""))
    phase = status.get("phase")
    if phase == "Failed":
        return Health.degraded, f"Failed: {status.get('reason') or status.get('message', '')}"
    if phase == "Succeeded":
        return Health.healthy, "Succeeded"
    if phase == "Running" and _conditions(status).get("Ready", {}).get("status") == "True":
        return Health.healthy, "Running, ready"
    return Health.progressing, f"{phase or 'Pending'}"


# ArgoCD's health words are ours (ours were taken from ArgoCD); Suspended is a paused
# rollout or job, which waits on a person: Progressing, said so in the detail.
_ARGO_HEALTH = {"Healthy": Health.healthy, "Progressing": Health.progressing,
                "Degraded": Health.degraded, "Missing": Health.missing,
                "Unknown": Health.unknown, "Suspended": Health.progressing}


def application_health(app: Doc) -> tuple[Health, str]:
    """An ArgoCD Application's sync and health status, in the five words."""
    status = app.get("status") or {}
    health_status = str((status.get("health") or {}).get("status") or "Unknown")
    sync = status.get("sync") or {}
    sync_status = str(sync.get("status") or "Unknown")
    revision = str(sync.get("revision") or "")[:12]
    op = status.get("operationState") or {}
    detail = f"{sync_status}{' at ' + revision if revision else ''}, {health_status}"
    if op.get("phase") in ("Failed", "Error"):
        return Health.degraded, f"{detail}; last sync {op['phase']}: {op.get('message', '')}"
    health = _ARGO_HEALTH.get(health_status, Health.unknown)
    if health is Health.healthy and sync_status == "OutOfSync":
        return Health.progressing, detail + " (ArgoCD has not applied the newest revision)"
    if health is Health.healthy and sync_status == "Unknown":
        return Health.unknown, detail
    return health, detail


def service_health(objects: Iterable[Doc | None]) -> tuple[Health, str]:
    """A service's health: its worst object's, with that object's reason."""
    judged = [(object_health(o), o) for o in objects]
    if not judged:
        return Health.unknown, "no objects"
    bad = worst([h for (h, _), _ in judged])
    (health, detail), obj = next(j for j in judged if j[0][0] is bad)
    if health is Health.healthy:
        return health, detail
    what = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}" if obj else "object"
    return health, f"{what}: {detail}"


# -- scheduled jobs (CronJob) ---------------------------------------------------------------

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # on a Job's pods (Kubernetes 1.27+)
LEGACY_JOB_NAME_LABEL = "job-name"


def _when(value: Any) -> datetime | None:
    """An RFC 3339 time from the API (`2026-11-27T12:00:00Z`), aware; None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def owned_jobs(cronjob: Doc, jobs: Iterable[Doc]) -> list[Doc]:
    """The Jobs this CronJob made (its controller ownerReference), oldest first."""
    meta = cronjob.get("metadata") or {}
    uid = meta.get("uid")

    def mine(job: Doc) -> bool:
        return any(ref.get("kind") == "CronJob" and ref.get("name") == meta.get("name")
                   and (uid is None or ref.get("uid") in (None, uid))
                   for ref in (job.get("metadata") or {}).get("ownerReferences") or [])

    def started(job: Doc) -> tuple[str, str]:
        when = (job.get("status") or {}).get("startTime") or \
            (job.get("metadata") or {}).get("creationTimestamp") or ""
        return str(when), str((job.get("metadata") or {}).get("name", ""))

    return sorted((j for j in jobs if mine(j)), key=started)


def job_outcome(job: Doc) -> str:
    """`complete`, `failed` or `running`, as the Job's conditions say."""
    conds = _conditions(job.get("status") or {})
    if conds.get("Failed", {}).get("status") == "True":
        return "failed"
    if conds.get("Complete", {}).get("status") == "True":
        return "complete"
    return "running"


def exit_code(pods: Iterable[Doc]) -> int | None:
    """The exit code a Job's pods ended with: the first non-zero one, else 0; None when no
    container terminated (or the pods are gone)."""
    codes = []
    for pod in pods:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                code = (state.get("terminated") or {}).get("exitCode")
                if isinstance(code, int):
                    codes.append(code)
    if not codes:
        return None
    return next((c for c in codes if c != 0), 0)


def cronjob_health(job: JobSpec, cronjob: Doc | None, jobs: Iterable[Doc], at: datetime,
                   failed_exit: int | None = None) -> tuple[Health, str, JobRun]:
    """A CronJob's health by the rules of native jobs (core/jobs.py `judge`), from its
    status (lastScheduleTime, lastSuccessfulTime, active) and its newest Job: Degraded
    when that Job failed, when a run is overdue or when the last success is older than
    `max_age`. `failed_exit`: the exit code the failed Job's pods report, if any.

    Times are in the CronJob's `timeZone`, else UTC (the kube-controller-manager's zone
    on kind, minikube and k3s): next runs are computed with core/schedule.py from the
    schedule the cluster holds."""
    from dataclasses import replace
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


    if cronjob is None:
        return Health.missing, "CronJob not found in the cluster", JobRun(None, None, None)
    spec = cronjob.get("spec") or {}
    status = cronjob.get("status") or {}
    try:
        zone = ZoneInfo(str(spec.get("timeZone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    at = at.astimezone(zone)
    schedule = str(spec.get("schedule") or "")
    try:
        parse_cron(schedule)
        job = replace(job, cron=schedule, every=None)  # what the cluster runs
    except ValueError:
        pass  # judged on the catalog's schedule
    mine = owned_jobs(cronjob, jobs)
    newest = mine[-1] if mine else None
    outcome = job_outcome(newest) if newest is not None else None
    active = bool(status.get("active")) or outcome == "running"
    last = _when(status.get("lastScheduleTime"))
    if newest is not None:
        last = max(filter(None, (last, _when((newest.get("status") or {}).get("startTime")))),
                   default=None)
    success = _when(status.get("lastSuccessfulTime"))
    code: int | None = None
    output = ""
    if outcome == "complete":
        code = 0
    elif outcome == "failed":
        assert newest is not None
        failed = _conditions(newest.get("status") or {})["Failed"]
        code = failed_exit if failed_exit else None
        output = (f"Job {newest['metadata'].get('name')} failed: "
                  f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}").rstrip(": ")
    elif last is not None and success is not None and success >= last:
        code = 0  # its Job is gone (history limits), but it succeeded
    since = _when((cronjob.get("metadata") or {}).get("creationTimestamp")) or at
    record = {"scheduled_since": since.isoformat(), "running": active,
              "last_start": last.isoformat() if last else None,
              "last_success": success.isoformat() if success else None,
              "exit_code": code, "output": output}
    coming = None if spec.get("suspend") else next_run(job.cron, job.every, at)
    run = JobRun(last.astimezone(zone).isoformat(timespec="seconds") if last else None,
                 coming.isoformat(timespec="seconds") if coming else None,
                 code, active)
    if spec.get("suspend") and not active:
        return Health.progressing, "suspended: it runs again when resumed", run
    health, detail = judge(job, record, at)
    return health, detail, run
