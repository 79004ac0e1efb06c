"""Plan: desired resources vs what drivers observe -> changes. Pure: no I/O here.

Secret values never reach this module: a resource carries secret references, and the
caller passes keyed fingerprints of the resolved values, so the plan can say a secret
changed without knowing or showing it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from blumeops.core.resources import Resource

Action = Literal["create", "update", "delete", "unchanged"]


@dataclass(frozen=True)
class Live:
    """What a driver sees for one resource: its body, and whether it is running."""

    body: str
    running: bool | None = None  # None: not a process
    state: str = ""  # driver's own word, e.g. FATAL
    # Drivers that compare by themselves (a server-side dry run, an API's ETag) give the
    # diff: "" for the same, else why and the diff to show. `skip`: not planned (why).
    diff: str | None = None
    reason: str = ""
    skip: str = ""
    # A process started before its configuration was last written (drivers/marks.py):
    # why a restart is owed, "" when none.
    restart_pending: str = ""


@dataclass(frozen=True)
class Change:
    action: Action
    id: str
    kind: str
    name: str
    target: str
    service: str | None
    reasons: tuple[str, ...] = ()
    diff: str = ""
    desired: Resource | None = None
    secrets_fp: str = ""  # keyed fingerprint of the desired secret values ("" for none)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "id": self.id, "target": self.target, "kind": self.kind,
            "name": self.name, "service": self.service, "reasons": list(self.reasons),
            "diff": self.diff,
        }


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action != "unchanged"]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def counts(self) -> dict[str, int]:
        counts = Counter(c.action for c in self.changes)
        return {a: counts.get(a, 0) for a in ("create", "update", "delete", "unchanged")}

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "changes": [c.as_dict() for c in self.pending]}


def normalise(kind: str, body: str) -> str:
    """Bodies compare as the tool reads them: JSON by value, text as written."""
    if kind == "config":
        try:
            return json.dumps(json.loads(body), sort_keys=True, indent=2)
        except ValueError:
            return body
    return body


def unified_diff(old: str, new: str, name: str) -> str:
    import difflib

    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"live/{name}",
                                 f"desired/{name}", lineterm="", n=2)
    return "\n".join(lines)


def make_plan(
    desired: list[Resource],
    live: dict[str, Live],
    desired_fingerprints: dict[str, str] | None = None,
    recorded_fingerprints: dict[str, str] | None = None,
) -> Plan:
    """Compare desired with live. Live ids not desired become deletes."""
    want_fp = desired_fingerprints or {}
    have_fp = recorded_fingerprints or {}
    plan = Plan()
    for res in desired:
        current = live.get(res.id)
        if current is None:
            plan.changes.append(Change("create", res.id, res.kind, res.name, res.target,
                                       res.service, ("not present",), desired=res,
                                       secrets_fp=want_fp.get(res.id, "")))
            continue
        if current.skip:
            continue
        reasons: list[str] = []
        diff = ""
        if current.diff is not None:
            if current.diff or current.reason:
                reasons.append(current.reason or "configuration differs")
                diff = current.diff
        else:
            old, new = normalise(res.kind, current.body), normalise(res.kind, res.body)
            if old != new:
                reasons.append("configuration differs")
                diff = unified_diff(old, new, res.path)
            if current.reason:  # the driver's own reason to write it again
                reasons.append(current.reason)
        if want_fp.get(res.id, "") != have_fp.get(res.id, ""):
            reasons.append(f"secret values changed (fingerprint {want_fp.get(res.id, '')[:12]})")
        if current.running is False:
            reasons.append(f"not running ({current.state or 'stopped'})")
        elif current.restart_pending and not reasons:
            reasons.append(f"restart pending: {current.restart_pending}")
        action: Action = "update" if reasons else "unchanged"
        plan.changes.append(Change(action, res.id, res.kind, res.name, res.target, res.service,
                                   tuple(reasons), diff, res, want_fp.get(res.id, "")))
    wanted = {r.id for r in desired}
    for rid in sorted(set(live) - wanted):
        if live[rid].skip:
            continue
        target, kind, name = _split_id(rid)
        plan.changes.append(Change("delete", rid, kind, name, target, None,
                                   (live[rid].reason or "no longer in the catalog",),
                                   live[rid].diff or ""))
    return plan


def _split_id(rid: str) -> tuple[str, str, str]:
    target, _, rest = rid.partition("/")
    kind, _, name = rest.partition("/")
    return target, kind, name
