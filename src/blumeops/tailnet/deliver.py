"""`blumeops tailnet` delivery: the catalog's policy planned against the tailnet's, tested
offline, then pushed when the catalog enables it."""

from __future__ import annotations

from pathlib import Path

from blumeops.catalog.model import Lab
from blumeops.core.errors import DeliveryError
from blumeops.tailnet.push import (
    PolicyPlan,
    PushError,
    PushResult,
    apply_policy,
    client_for,
    offline_tests_fail,
    plan_policy,
    read_seen,
    rendered_policy,
)


def _tailnet(lab: Lab) -> tuple[str, str]:
    got = rendered_policy(lab)
    if got is None:
        raise DeliveryError("the catalog has no tailnet")
    return got


def plan_tailnet(lab: Lab, lab_dir: Path, state_dir: Path) -> PolicyPlan:
    name, text = _tailnet(lab)
    try:
        with client_for(lab, lab_dir) as client:
            return plan_policy(text, client.get_policy(), read_seen(state_dir, name), name)
    except PushError as exc:
        raise DeliveryError(str(exc)) from None


def apply_tailnet(lab: Lab, lab_dir: Path, state_dir: Path, *, overwrite: bool = False,
                  take_theirs: bool = False) -> PushResult:
    """Validate, test offline, then push when the catalog enables it (else a dry run)."""
    name, text = _tailnet(lab)
    assert lab.tailnet is not None
    try:
        with client_for(lab, lab_dir) as client:
            return apply_policy(client, text, state_dir, name, enabled=lab.tailnet.push,
                                offline_failures=offline_tests_fail(lab),
                                overwrite=overwrite, take_theirs=take_theirs)
    except PushError as exc:
        raise DeliveryError(str(exc)) from None
