"""Direct delivery's pure parts: apply order, prune selection, and the health of live
objects. The status objects follow the examples in the Kubernetes documentation
(Deployments "Failed Deployment", Jobs, PersistentVolumes, "Debug Pods") and ArgoCD's
Application status, as `kubectl get -o yaml` shows them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from blumeops.catalog.model import Lab
from blumeops.core.health import Health
from blumeops.kubernetes.apply import clean, object_diff
from blumeops.kubernetes.manifests import (
    LiveObject,
    manifests,
    object_health,
    prune_selection,
    service_health,
    waves,
)
from blumeops.render import render_lab

OWN = {"app.kubernetes.io/managed-by": "blumeops", "blumeops.dev/lab": "blumeops"}


def _y(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def test_waves_put_namespaces_first_and_dependencies_before_dependents(
        blumeops_lab: Lab) -> None:
    items = manifests(render_lab(blumeops_lab, only=("kubernetes",)), "minikube")
    order = waves(items)
    assert {m.kind for m in order[0]} == {"Namespace"}
    assert not any(m.kind == "Namespace" for wave in order[1:] for m in wave)
    index = {}
    for i, wave in enumerate(order):
        for m in wave:
            if m.service and m.kind != "Namespace":
                index.setdefault(m.service, i)
                assert index[m.service] == i, f"{m.service} split over waves"
    assert sum(len(w) for w in order) == len(items)
    for m in items:
        for dep in m.depends_on:
            if dep in index:
                assert index[dep] < index[m.service or ""], (dep, m.service)
    assert index["grafana"] > index["prometheus"] and index["miniflux"] > index["postgresql"]
    # Cluster-wide objects (no service: their CRDs come from an operator) go last: the
    # ClusterSecretStore, and the ExternalSecret telling ArgoCD about the k3s cluster.
    assert sorted(m.kind for m in order[-1]) == ["ClusterSecretStore", "ExternalSecret"]


def test_waves_apply_crds_with_namespaces() -> None:
    from blumeops.kubernetes.manifests import Manifest

    crd = Manifest({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": "widgets.example.com"}}, "op", (), "x")
    dep = Manifest({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "op", "namespace": "op"}}, "op", (), "y")
    assert waves([dep, crd]) == [[crd], [dep]]


def _live(kind: str, name: str, ns: str | None, labels: dict[str, str],
          api: str = "apps/v1") -> LiveObject:
    return LiveObject(api, kind, name, ns, labels)


def test_prune_selects_only_this_labs_objects_no_longer_rendered(blumeops_lab: Lab) -> None:
    items = manifests(render_lab(blumeops_lab, only=("kubernetes",)), "minikube")
    kept = _live("Deployment", "grafana", "grafana", OWN)
    gone = _live("Deployment", "oldapp", "oldapp", OWN)
    gone_ns = _live("Namespace", "oldapp", None, OWN, "v1")
    other_lab = _live("Deployment", "x", "x", {**OWN, "blumeops.dev/lab": "other"})
    other_tool = _live("Deployment", "y", "y", {"app.kubernetes.io/managed-by": "Helm",
                                                 "blumeops.dev/lab": "blumeops"})
    unlabelled = _live("Deployment", "z", "z", {})
    half = _live("Deployment", "w", "w", {"blumeops.dev/lab": "blumeops"})
    assert kept.key in {m.key for m in items}
    doomed = prune_selection([gone_ns, kept, gone, other_lab, other_tool, unlabelled, half],
                             items, "blumeops")
    # Workloads before the namespace that holds them; nothing that is not ours.
    assert doomed == [gone, gone_ns]


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment, namespace: default, generation: 3}
spec: {replicas: 3}
status:
  availableReplicas: 2
  conditions:
  - lastTransitionTime: 2016-10-04T12:25:39Z
    lastUpdateTime: 2016-10-04T12:25:39Z
    message: Replica set "nginx-deployment-4262182780" is progressing.
    reason: ReplicaSetUpdated
    status: "True"
    type: Progressing
  - lastTransitionTime: 2016-10-04T12:25:42Z
    lastUpdateTime: 2016-10-04T12:25:42Z
    message: Deployment has minimum availability.
    reason: MinimumReplicasAvailable
    status: "True"
    type: Available
  - lastTransitionTime: 2016-10-04T12:25:39Z
    lastUpdateTime: 2016-10-04T12:25:39Z
    message: 'Error creating: pods "nginx-deployment-4262182780-" is forbidden: exceeded quota:
      object-counts, requested: pods=1, used: pods=3, limited: pods=2'
    reason: FailedCreate
    status: "True"
    type: ReplicaFailure
  observedGeneration: 3
  replicas: 2
  unavailableReplicas: 2
"""

DEADLINE = """
  - lastTransitionTime: 2016-10-04T12:35:39Z
    message: ReplicaSet "nginx-deployment-4262182780" has timed out progressing.
    reason: ProgressDeadlineExceeded
    status: "False"
    type: Progressing
"""

COMPLETE_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: nginx-deployment, generation: 2}
spec: {replicas: 3}
status:
  availableReplicas: 3
  conditions:
  - {type: Available, status: "True", reason: MinimumReplicasAvailable}
  - {type: Progressing, status: "True", reason: NewReplicaSetAvailable,
     message: ReplicaSet "nginx-deployment-66b6c48dd5" has successfully progressed.}
  observedGeneration: 2
  readyReplicas: 3
  replicas: 3
  updatedReplicas: 3
"""


def test_deployment_rollout_words() -> None:
    progressing = _y(DEPLOYMENT)
    assert object_health(progressing) == (Health.progressing, "0 of 3 replicas updated")
    stalled = _y(DEPLOYMENT.replace("""  - lastTransitionTime: 2016-10-04T12:25:39Z
    lastUpdateTime: 2016-10-04T12:25:39Z
    message: Replica set "nginx-deployment-4262182780" is progressing.
    reason: ReplicaSetUpdated
    status: "True"
    type: Progressing
""", DEADLINE.lstrip("\n")))
    health, detail = object_health(stalled)
    assert health is Health.degraded and "timed out progressing" in detail
    assert object_health(_y(COMPLETE_DEPLOYMENT))[0] is Health.healthy
    unseen = _y(COMPLETE_DEPLOYMENT.replace("generation: 2", "generation: 3"))
    assert object_health(unseen)[0] is Health.progressing
    surge = _y(COMPLETE_DEPLOYMENT.replace("  replicas: 3\n  updatedReplicas", "  replicas: 4\n"
                                           "  updatedReplicas"))
    assert object_health(surge) == (Health.progressing, "1 old replicas pending termination")


STATEFULSET = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, generation: 1}
spec:
  replicas: 3
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 0}}
status:
  availableReplicas: 2
  collisionCount: 0
  currentReplicas: 3
  currentRevision: web-6b4c5f8d8b
  observedGeneration: 1
  readyReplicas: 2
  replicas: 3
  updateRevision: web-6b4c5f8d8b
  updatedReplicas: 3
"""

DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: fluentd-elasticsearch, namespace: kube-system, generation: 1}
status:
  currentNumberScheduled: 2
  desiredNumberScheduled: 2
  numberAvailable: 2
  numberMisscheduled: 0
  numberReady: 2
  observedGeneration: 1
  updatedNumberScheduled: 2
"""


def test_statefulset_and_daemonset_rollouts() -> None:
    assert object_health(_y(STATEFULSET)) == (Health.progressing, "2 of 3 pods ready")
    ready = _y(STATEFULSET.replace("readyReplicas: 2", "readyReplicas: 3"))
    assert object_health(ready)[0] is Health.healthy
    rolling = _y(STATEFULSET.replace("readyReplicas: 2", "readyReplicas: 3")
                 .replace("updateRevision: web-6b4c5f8d8b", "updateRevision: web-7c9d"))
    assert object_health(rolling) == (Health.progressing, "rolling update in progress")
    assert object_health(_y(DAEMONSET))[0] is Health.healthy
    behind = _y(DAEMONSET.replace("updatedNumberScheduled: 2", "updatedNumberScheduled: 1"))
    assert object_health(behind) == (Health.progressing, "1 of 2 pods updated")


JOB_DONE = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
status:
  completionTime: "2021-02-16T09:45:46Z"
  conditions:
  - {type: Complete, status: "True", lastProbeTime: "2021-02-16T09:45:46Z"}
  ready: 0
  startTime: "2021-02-16T09:44:36Z"
  succeeded: 1
"""

JOB_FAILED = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi-with-timeout}
status:
  conditions:
  - type: Failed
    status: "True"
    reason: DeadlineExceeded
    message: Job was active longer than specified deadline
  failed: 1
"""


def test_jobs_and_claims() -> None:
    assert object_health(_y(JOB_DONE)) == (Health.healthy, "complete (1 succeeded)")
    health, detail = object_health(_y(JOB_FAILED))
    assert health is Health.degraded and detail.startswith("DeadlineExceeded")
    running = {"kind": "Job", "status": {"active": 1}}
    assert object_health(running) == (Health.progressing, "1 active")
    pvc = {"kind": "PersistentVolumeClaim", "status": {"phase": "Bound",
                                                       "accessModes": ["ReadWriteOnce"]}}
    assert object_health(pvc)[0] is Health.healthy
    assert object_health({**pvc, "status": {"phase": "Pending"}})[0] is Health.progressing
    assert object_health({**pvc, "status": {"phase": "Lost"}})[0] is Health.degraded
    assert object_health(None) == (Health.missing, "not found in the cluster")


CRASHING_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: api-5c9f7d8b6-x2x7q
  namespace: api
  labels: {app.kubernetes.io/name: api}
status:
  phase: Running
  conditions:
  - {type: Ready, status: "False", reason: ContainersNotReady}
  containerStatuses:
  - name: api
    ready: false
    restartCount: 5
    lastState:
      terminated: {exitCode: 1, reason: Error}
    state:
      waiting:
        message: back-off 2m40s restarting failed container=api pod=api-5c9f7d8b6-x2x7q
        reason: CrashLoopBackOff
"""


def test_crash_loop_is_degraded_even_while_the_rollout_progresses() -> None:
    pod = _y(CRASHING_POD)
    assert object_health(pod) == (Health.degraded,
                                  "container api: CrashLoopBackOff (5 restarts)")
    health, detail = service_health([_y(COMPLETE_DEPLOYMENT), pod])
    assert health is Health.degraded and detail.startswith("Pod/api-5c9f7d8b6-x2x7q:")
    healthy_pod = _y(CRASHING_POD.replace('status: "False", reason: ContainersNotReady',
                                          'status: "True"')
                     .replace("reason: CrashLoopBackOff", "reason: Started"))
    assert object_health(healthy_pod) == (Health.healthy, "Running, ready")
    assert service_health([_y(COMPLETE_DEPLOYMENT), healthy_pod])[0] is Health.healthy


APPLICATION = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
status:
  health: {status: Healthy}
  sync:
    status: Synced
    revision: 4773b9f1f0cd6ee54ab9f6d3f2b7d3a9c1f6b4e2
    comparedTo:
      source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git",
               path: guestbook, targetRevision: HEAD}
  operationState:
    phase: Succeeded
    message: successfully synced (all tasks run)
"""


@pytest.mark.parametrize(("health", "sync", "phase", "word"), [
    ("Healthy", "Synced", "Succeeded", Health.healthy),
    ("Healthy", "OutOfSync", "Succeeded", Health.progressing),
    ("Progressing", "Synced", "Running", Health.progressing),
    ("Degraded", "Synced", "Succeeded", Health.degraded),
    ("Missing", "OutOfSync", "Succeeded", Health.missing),
    ("Suspended", "Synced", "Succeeded", Health.progressing),
    ("Unknown", "Unknown", "Succeeded", Health.unknown),
    ("Healthy", "Synced", "Failed", Health.degraded),
])
def test_argocd_application_words(health: str, sync: str, phase: str, word: Health) -> None:
    app = _y(APPLICATION.replace("status: Healthy", f"status: {health}")
             .replace("status: Synced", f"status: {sync}")
             .replace("phase: Succeeded", f"phase: {phase}"))
    got, detail = object_health(app)
    assert got is word and detail.startswith(f"{sync} at 4773b9f1f0cd, {health}")


def test_diff_ignores_what_the_server_writes() -> None:
    desired = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "api", "namespace": "api", "labels": OWN},
               "spec": {"ports": [{"port": 80}]}}
    live = {**desired, "metadata": {**desired["metadata"], "uid": "1", "resourceVersion": "9",
                                    "managedFields": [{"manager": "blumeops"}],
                                    "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"loadBalancer": {}}}
    assert clean(live) == desired
    assert object_diff(live, desired, "Service/api") == ""
    changed = {**desired, "spec": {"ports": [{"port": 8080}]}}
    diff = object_diff(live, changed, "Service/api")
    assert "-  - port: 80\n" in diff and "+  - port: 8080\n" in diff
