"""The resource: the unit every stage after render speaks.

A resource is plain data: where it lives (target), what it is (kind), its name, and its
body (the exact text the tool reads). Renderers make them, the plan compares them with
what drivers observe, drivers apply them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resource:
    target: str  # where it lives: "caddy@box", "supervisor@box", "k8s@minikube", ...
    kind: str  # what it is: "config", "program", "file", "Deployment", ...
    name: str  # unique within (target, kind)
    body: str  # the exact text the tool reads; never a secret value
    path: str  # where `blumeops render --out DIR` writes it, relative to DIR
    service: str | None = None  # the catalog service it belongs to, if any
    depends_on: tuple[str, ...] = ()  # services that must be healthy first
    secret_refs: tuple[tuple[str, str], ...] = ()  # (name, reference): resolved at apply
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        return f"{self.target}/{self.kind}/{self.name}"

    @property
    def target_kind(self) -> str:
        """The driver that owns it: the part of target before '@'."""
        return self.target.partition("@")[0]

    @property
    def digest(self) -> str:
        h = hashlib.sha256(self.body.encode())
        for name, ref in self.secret_refs:
            h.update(f"\0{name}={ref}".encode())
        return h.hexdigest()
