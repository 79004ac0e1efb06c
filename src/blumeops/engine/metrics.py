"""The controller's Prometheus metrics, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

HEALTHS = ("Healthy", "Progressing", "Degraded", "Missing", "Unknown")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.syncs = Counter("blumeops_syncs", "Syncs of a commit, by result.", ["result"],
                             registry=r)
        self.sync_duration = Histogram(
            "blumeops_sync_duration_seconds", "Time from fetch to applied, per sync.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)
        self.commits_behind = Gauge("blumeops_commits_behind",
                                    "Commits on the branch newer than the applied one.",
                                    registry=r)
        self.lag_seconds = Gauge("blumeops_sync_lag_seconds",
                                 "Seconds the newest commit has waited to be applied.",
                                 registry=r)
        self.drift_heals = Counter("blumeops_drift_heals",
                                   "Drifted resources repaired between commits.", registry=r)
        self.fetch_failures = Counter("blumeops_git_fetch_failures",
                                      "Failed fetches of the source repository.", registry=r)
        self.webhooks = Counter("blumeops_webhook_requests", "Webhook requests, by result.",
                                ["result"], registry=r)
        self.service_health = Gauge(
            "blumeops_service_health",
            "1 for each service's current health (label health), 0 for the others.",
            ["service", "health"], registry=r)
        self.target_health = Gauge(
            "blumeops_target_health",
            "1 for the current health of each cluster Application or tailnet policy (label "
            "health), 0 for the others.", ["target", "name", "health"], registry=r)
        self._services: set[str] = set()
        self._targets: set[tuple[str, str]] = set()

    def set_health(self, healths: dict[str, str]) -> None:
        for gone in self._services - set(healths):
            for h in HEALTHS:
                self.service_health.remove(gone, h)
        for service, health in healths.items():
            for h in HEALTHS:
                self.service_health.labels(service=service, health=h).set(
                    1 if h == health else 0)
        self._services = set(healths)

    def set_target_health(self, healths: dict[tuple[str, str], str]) -> None:
        """(target, name) -> health word, for what is not a service: an app-of-apps,
        the tailnet policy."""
        for target, name in self._targets - set(healths):
            for h in HEALTHS:
                self.target_health.remove(target, name, h)
        for (target, name), health in healths.items():
            for h in HEALTHS:
                self.target_health.labels(target=target, name=name, health=h).set(
                    1 if h == health else 0)
        self._targets = set(healths)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
