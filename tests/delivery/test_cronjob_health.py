"""Kubernetes CronJobs (services with `schedule:` in a `delivery: apply` cluster): health
from the CronJob's status and its newest Job, by the rules of native jobs
(core/jobs.py), with last run, next run and exit code as `status` shows them.

The status objects follow the Kubernetes documentation ("CronJob", "Jobs": `kubectl get
-o yaml` of a CronJob with an active Job, a complete Job, a Job failed with
BackoffLimitExceeded, and a Job's pod, labelled `batch.kubernetes.io/job-name`). The
stand-in tests drive `blumeops status` through the stand-in API server."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from k8s_standin import KubeStandIn, kube_stand_in, kubeconfig

from blumeops.cli import cli
from blumeops.core.health import Health
from blumeops.core.spec import JobSpec
from blumeops.kubernetes.manifests import cronjob_health, exit_code, owned_jobs

CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
  namespace: backup
  uid: 5a1c9d4e-8f1b-4c55-9a43-1d2e3f4a5b6c
  creationTimestamp: "2026-11-01T08:00:00Z"
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: backup, image: example/backup:1.0}]
          restartPolicy: OnFailure
status:
  lastScheduleTime: "2026-11-27T03:00:00Z"
  lastSuccessfulTime: "2026-11-27T03:01:12Z"
"""

JOB_COMPLETE = """
apiVersion: batch/v1
kind: Job
metadata:
  name: backup-29403540
  namespace: backup
  annotations: {batch.kubernetes.io/cronjob-scheduled-timestamp: "2026-11-27T03:00:00Z"}
  ownerReferences:
  - {apiVersion: batch/v1, kind: CronJob, name: backup, controller: true,
     blockOwnerDeletion: true, uid: 5a1c9d4e-8f1b-4c55-9a43-1d2e3f4a5b6c}
spec:
  backoffLimit: 0
  template:
    spec:
      containers: [{name: backup, image: example/backup:1.0}]
      restartPolicy: OnFailure
status:
  completionTime: "2026-11-27T03:01:12Z"
  conditions:
  - {type: Complete, status: "True", lastProbeTime: "2026-11-27T03:01:12Z",
     lastTransitionTime: "2026-11-27T03:01:12Z"}
  ready: 0
  startTime: "2026-11-27T03:00:04Z"
  succeeded: 1
"""

FAILED_STATUS = """
conditions:
- {type: FailureTarget, status: "True", reason: BackoffLimitExceeded,
   message: Job has reached the specified backoff limit}
- {type: Failed, status: "True", reason: BackoffLimitExceeded,
   message: Job has reached the specified backoff limit}
failed: 1
ready: 0
startTime: "2026-11-27T03:00:04Z"
"""

JOB_POD_FAILED = """
apiVersion: v1
kind: Pod
metadata:
  name: backup-29403540-7x2kq
  namespace: backup
  labels: {batch.kubernetes.io/job-name: backup-29403540, job-name: backup-29403540}
  ownerReferences:
  - {apiVersion: batch/v1, kind: Job, name: backup-29403540, controller: true,
     uid: 0c4b2a11-2f9e-4d7e-b0f5-6a7b8c9d0e1f}
spec:
  containers: [{name: backup, image: example/backup:1.0}]
  restartPolicy: OnFailure
status:
  phase: Failed
  containerStatuses:
  - name: backup
    image: example/backup:1.0
    imageID: ""
    ready: false
    restartCount: 0
    state:
      terminated: {exitCode: 3, reason: Error, startedAt: "2026-11-27T03:00:05Z",
                   finishedAt: "2026-11-27T03:00:41Z"}
"""

DAILY = JobSpec(cron="0 3 * * *")
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _y(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def _failed(job: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(job)
    job["status"] = _y(FAILED_STATUS)
    return job


def test_a_complete_last_job_is_healthy_with_its_last_and_next_run() -> None:
    health, detail, run = cronjob_health(DAILY, _y(CRONJOB), [_y(JOB_COMPLETE)], NOON)
    assert (health, detail) == (Health.healthy, "last run 2026-11-27T03:00:04+00:00: exit 0")
    assert run.as_dict() == {"last_run": "2026-11-27T03:00:04+00:00",
                             "next_run": "2026-11-28T03:00:00+00:00", "exit_code": 0,
                             "running": False}


def test_a_failed_last_job_is_degraded_with_its_exit_code_and_reason() -> None:
    older = _y(JOB_COMPLETE.replace("29403540", "29402100")
               .replace("2026-11-27T03:0", "2026-11-26T03:0"))
    cronjob = _y(CRONJOB.replace('lastSuccessfulTime: "2026-11-27T03:01:12Z"',
                                 'lastSuccessfulTime: "2026-11-26T03:01:12Z"'))
    failed = _failed(_y(JOB_COMPLETE))
    code = exit_code([_y(JOB_POD_FAILED)])
    assert code == 3
    health, detail, run = cronjob_health(DAILY, cronjob, [failed, older], NOON, code)
    assert health is Health.degraded
    assert detail == ("last run 2026-11-27T03:00:04+00:00: exit 3; output: Job "
                      "backup-29403540 failed: BackoffLimitExceeded: Job has reached the "
                      "specified backoff limit")
    assert run.exit_code == 3 and not run.running
    # Its pods gone (history limits): still Degraded, said without an exit code.
    health, detail, run = cronjob_health(DAILY, cronjob, [failed, older], NOON)
    assert health is Health.degraded and "did not run to its end" in detail
    assert run.exit_code is None


def test_a_running_job_is_progressing_until_max_age_passes() -> None:
    cronjob = _y(CRONJOB)
    cronjob["status"]["active"] = [{"apiVersion": "batch/v1", "kind": "Job",
                                    "name": "backup-29403540", "namespace": "backup"}]
    running = _y(JOB_COMPLETE)
    running["status"] = {"active": 1, "ready": 1, "startTime": "2026-11-27T03:00:04Z"}
    cronjob["status"]["lastSuccessfulTime"] = "2026-11-26T03:01:12Z"
    health, detail, run = cronjob_health(DAILY, cronjob, [running], NOON)
    assert (health, detail) == (Health.progressing,
                                "running since 2026-11-27T03:00:04+00:00")
    assert run.running and run.exit_code is None
    hung = JobSpec(cron="0 3 * * *", max_age=26 * 3600)
    health, detail, _ = cronjob_health(hung, cronjob, [running], NOON + timedelta(hours=6))
    assert health is Health.degraded and "no successful run since 2026-11-26T03:01:12" in detail


def test_overdue_stale_missing_suspended_and_not_yet_run() -> None:
    cronjob = _y(CRONJOB)
    # The 03:00 run of the 28th never came: overdue after the grace (10 minutes).
    late = datetime(2026, 11, 28, 3, 11, tzinfo=UTC)
    health, detail, _ = cronjob_health(DAILY, cronjob, [_y(JOB_COMPLETE)], late)
    assert health is Health.degraded and detail.startswith("overdue: due at 2026-11-28T03:00")
    on_time = datetime(2026, 11, 28, 3, 9, tzinfo=UTC)
    assert cronjob_health(DAILY, cronjob, [_y(JOB_COMPLETE)], on_time)[0] is Health.healthy
    assert cronjob_health(DAILY, None, [], NOON)[:2] == (Health.missing,
                                                         "CronJob not found in the cluster")
    suspended = _y(CRONJOB)
    suspended["spec"]["suspend"] = True
    health, detail, run = cronjob_health(DAILY, suspended, [_y(JOB_COMPLETE)], late)
    assert health is Health.progressing and detail.startswith("suspended")
    assert run.next_run is None
    new = _y(CRONJOB)
    new["metadata"]["creationTimestamp"] = "2026-11-27T10:00:00Z"
    new["status"] = {}
    health, detail, run = cronjob_health(DAILY, new, [], NOON)
    assert (health, detail) == (Health.healthy,
                                "no run yet; first at 2026-11-28T03:00:00+00:00")
    assert run.last_run is None and run.exit_code is None


def test_the_clusters_schedule_and_time_zone_decide_the_next_run() -> None:
    cronjob = _y(CRONJOB)
    cronjob["spec"]["timeZone"] = "Europe/Berlin"
    _, _, run = cronjob_health(JobSpec(every=86400), cronjob, [_y(JOB_COMPLETE)], NOON)
    assert run.next_run == "2026-11-28T03:00:00+01:00"
    assert run.last_run == "2026-11-27T04:00:04+01:00"


def test_only_the_cronjobs_own_jobs_count() -> None:
    mine = _y(JOB_COMPLETE)
    other = _failed(_y(JOB_COMPLETE.replace("name: backup,", "name: report,")
                       .replace("backup-29403540", "report-29403541")))
    loose = _failed(_y(JOB_COMPLETE))
    loose["metadata"]["name"] = "by-hand"
    del loose["metadata"]["ownerReferences"]
    loose["status"]["startTime"] = "2026-11-27T09:00:00Z"
    assert owned_jobs(_y(CRONJOB), [other, loose, mine]) == [mine]
    assert cronjob_health(DAILY, _y(CRONJOB), [other, loose, mine], NOON)[0] is Health.healthy


# -- through the stand-in API server ----------------------------------------------------------

TOKEN = "cronjob-token"
OWN = {"app.kubernetes.io/managed-by": "blumeops", "blumeops.dev/lab": "t"}


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeStandIn]:
    with kube_stand_in(TOKEN) as api:
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kubeconfig", api.url,
                                                        TOKEN, "kind-test")))
        yield api


def _cli(lab: Path, state: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, str(lab), "--state-dir", str(state)],
                              catch_exceptions=False)


def _job(cronjob: dict[str, Any], name: str, start: datetime, status: dict[str, Any]
         ) -> dict[str, Any]:
    job = _y(JOB_COMPLETE)
    job["metadata"].update({"name": name, "namespace": "report", "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "controller": True,
         "uid": cronjob["metadata"]["uid"]}]})
    job["status"] = {**status, "startTime": _iso(start)}
    return job


def _pod(job: str, status: dict[str, Any]) -> dict[str, Any]:
    pod = _y(JOB_POD_FAILED.replace("backup-29403540", job).replace("backup", "report"))
    pod["metadata"]["labels"].update({**OWN, "app.kubernetes.io/name": "report"})
    pod["status"] = status
    return pod


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_stand_in_status_shows_a_cronjobs_health_last_and_next_run(
        tmp_path: Path, cluster: KubeStandIn) -> None:
    catalog = {"lab": "t",
               "hosts": {"box": {"role": "compute", "os": "linux", "address": "127.0.0.1"}},
               "clusters": {"kind": {"host": "box", "context": "kind-test",
                                     "delivery": "apply"}},
               "services": {"report": {"kubernetes": "kind", "image": "example/report:1.0",
                                       "schedule": {"cron": "0 * * * *", "max_age": "3h"}}}}
    lab = tmp_path / "lab" / "lab.yaml"
    lab.parent.mkdir()
    lab.write_text(yaml.safe_dump(catalog, sort_keys=False))
    state = tmp_path / "state"
    applied = _cli(lab, state, "apply", "--yes")
    assert applied.exit_code in (0, 1), applied.output
    assert "rendered, not applied" not in applied.output  # its cluster runs it
    cronjob = cluster.get("batch/v1", "CronJob", "report", "report")
    assert cronjob is not None and cronjob["spec"]["schedule"] == "0 * * * *"

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    cronjob["metadata"]["creationTimestamp"] = _iso(hour - timedelta(days=1))
    cronjob["status"] = {"lastScheduleTime": _iso(hour),
                         "lastSuccessfulTime": _iso(hour + timedelta(seconds=70))}
    done = _job(cronjob, "report-1", hour + timedelta(seconds=4),
                {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    # An older failed run and its pod: history, not the present.
    old = _job(cronjob, "report-0", hour - timedelta(hours=1),
               _y(FAILED_STATUS) | {"startTime": _iso(hour - timedelta(hours=1))})
    for doc in (done, old, _pod("report-0", _y(JOB_POD_FAILED)["status"])):
        cluster.put(doc)
    ok = _cli(lab, state, "status", "-o", "json")
    data = json.loads(ok.stdout)
    [report] = data["services"]
    assert report["health"] == "Healthy", report
    assert report["host"] == "kind"
    assert report["job"] == {"last_run": (hour + timedelta(seconds=4)).isoformat(),
                             "next_run": (hour + timedelta(hours=1)).isoformat(),
                             "exit_code": 0, "running": False}
    assert ok.exit_code == 0, ok.output
    text = _cli(lab, state, "status").output
    assert "LAST RUN" in text and "NEXT RUN" in text and "EXIT" in text
    [row] = [line for line in text.splitlines() if line.startswith("report ")]
    assert (hour + timedelta(hours=1)).isoformat()[:19] in row
    check = _cli(lab, state, "check")
    assert "ok   job     report " in check.output, check.output

    # The newest run fails with exit 3: Degraded, with the exit code and the reason.
    done["status"] = _y(FAILED_STATUS) | {"startTime": _iso(hour + timedelta(seconds=4))}
    cronjob["status"]["lastSuccessfulTime"] = _iso(hour - timedelta(minutes=50))
    cluster.put(done)
    cluster.put(_pod("report-1", _y(JOB_POD_FAILED)["status"]))
    bad = _cli(lab, state, "status", "-o", "json")
    assert bad.exit_code == 1
    [report] = json.loads(bad.stdout)["services"]
    assert report["health"] == "Degraded"
    assert "exit 3" in report["detail"] and "BackoffLimitExceeded" in report["detail"]
    assert report["job"]["exit_code"] == 3
    check = _cli(lab, state, "check")
    assert check.exit_code == 1 and "FAIL job     report " in check.output, check.output

    # A new run is going, its pod stuck pulling its image: Degraded at once, as a
    # Deployment's would be; the failed runs' pods do not count.
    running = _job(cronjob, "report-2", hour + timedelta(seconds=30), {"active": 1})
    cronjob["status"]["active"] = [{"apiVersion": "batch/v1", "kind": "Job",
                                    "name": "report-2", "namespace": "report"}]
    stuck = _pod("report-2", {"phase": "Pending", "containerStatuses": [
        {"name": "report", "image": "example/report:1.0", "imageID": "", "ready": False,
         "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})
    cluster.put(running)
    cluster.put(stuck)
    [report] = json.loads(_cli(lab, state, "status", "-o", "json").stdout)["services"]
    assert report["health"] == "Degraded"
    assert "container report: ImagePullBackOff" in report["detail"], report
    assert report["job"]["running"] is True
    stuck["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "report", "image": "example/report:1.0",
                                              "imageID": "", "ready": True, "restartCount": 0,
                                              "state": {"running": {}}}]}
    cluster.put(stuck)
    [report] = json.loads(_cli(lab, state, "status", "-o", "json").stdout)["services"]
    assert report["health"] == "Progressing" and report["detail"].startswith("running since")

    # Leaving the catalog, the CronJob is pruned like any of this lab's objects.
    catalog["services"]["web"] = {"kubernetes": "kind", "image": "example/web:1.0"}
    del catalog["services"]["report"]
    lab.write_text(yaml.safe_dump(catalog, sort_keys=False))
    plan = _cli(lab, state, "plan")
    assert "- delete k8s@kind/CronJob/report/report" in plan.output, plan.output
