"""Driver of the tailnet: `tailscale@TAILNET/policy/policy`, the policy file behind
Tailscale's API (tailnet/push.py does the talking).

observe reads the live policy and its ETag and compares it with the rendered one and with
the one blumeops last pushed: the plan shows the difference, and an edit made elsewhere
(the admin console) as a diff of its own. apply pushes only what is safe: the policy's
tests pass offline, Tailscale's validate endpoint accepts it, `If-Match` carries the ETag
seen; an edit made elsewhere is refused until the user chooses (`blumeops tailnet push
--overwrite` or `--take-theirs`); with `push: false` it validates and pushes nothing.
health: in step (Healthy), waiting for a push (Progressing), edited elsewhere (Degraded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.health import TargetHealth
from blumeops.core.plan import Change, Live
from blumeops.core.spec import TailnetSpec, TargetUnavailable
from blumeops.drivers.base import ApiDriver, Secrets

if TYPE_CHECKING:
    from blumeops.tailnet.push import PolicyPlan, TailscaleClient

CHOOSE = "`blumeops tailnet push --overwrite` or `--take-theirs` chooses"


class TailscaleDriver(ApiDriver):
    kind = "tailscale"
    order = 45

    @property
    def tailnet(self) -> TailnetSpec:
        assert self.ctx.spec.tailnet is not None
        return self.ctx.spec.tailnet

    @property
    def shared(self) -> dict[str, Any]:
        shared: dict[str, Any] = self.ctx.runtime
        return shared

    def _client(self) -> TailscaleClient:
        # lazy: keeps httpx out of start-up
        from blumeops.tailnet.push import PushError, client_from_refs

        t = self.tailnet
        owner = self.shared.get("owner")
        secrets_dir = getattr(owner, "secrets_dir", self.ctx.lab_dir)
        try:
            return client_from_refs(t.api_key, t.oauth_client_id, t.oauth_client_secret,
                                    secrets_dir)
        except PushError as exc:
            raise TargetUnavailable(str(exc)) from None

    def _desired(self) -> str:
        policy = [r for r in self.resources if r.kind == "policy"]
        if not policy:
            # lazy: keeps httpx out of start-up
            from blumeops.tailnet.push import PushError

            raise PushError("no rendered policy")
        return policy[0].body

    def _plan(self) -> PolicyPlan:
        """The live policy against the catalog's and the last seen (read once)."""
        if "plan" not in self.shared:
            # lazy: keeps httpx out of start-up
            from blumeops.tailnet.push import PushError, plan_policy, read_seen

            try:
                with self._client() as client:
                    live = client.get_policy()
            except PushError as exc:
                raise TargetUnavailable(str(exc)) from None
            seen = read_seen(self.ctx.state_dir, self.tailnet.name)
            self.shared["plan"] = plan_policy(self._desired(), live, seen, self.tailnet.name)
        plan: PolicyPlan = self.shared["plan"]
        return plan

    def observe(self, answers: Sequence[Any]) -> dict[str, Live]:
        plan = self._plan()
        out: dict[str, Live] = {}
        for res in self.resources:
            if plan.action == "unchanged":
                out[res.id] = Live(res.body, diff="")
            elif plan.action == "conflict" and self.ctx.spec.controller:
                # The loop cannot choose for the user: the policy's health says Degraded,
                # and nothing is retried (nor counted as drift) every pass.
                out[res.id] = Live("", skip=f"{plan.reason} ({CHOOSE})")
            elif plan.action == "conflict":
                # The edit made elsewhere first, then what pushing would do to it.
                out[res.id] = Live("", diff=f"{plan.their_edit}{plan.diff}",
                                   reason=f"{plan.reason.split(':')[0]}: apply refuses until "
                                          f"{CHOOSE}")
            else:
                dry = "" if self.tailnet.push else "; push is off: apply validates only"
                out[res.id] = Live("", diff=plan.diff, reason=f"{plan.reason}{dry}")
        return out

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        # lazy: keeps httpx out of start-up
        from blumeops.tailnet.push import PushError, apply_policy

        t = self.tailnet
        try:
            failures = self._offline_failures()
            with self._client() as client:
                result = apply_policy(client, self._desired(), self.ctx.state_dir, t.name,
                                      enabled=t.push, offline_failures=failures)
        except PushError as exc:
            return {c.id: str(exc) for c in changes}
        self.shared["plan"] = result.plan
        if result.result == "refused":
            hint = f" ({CHOOSE})" if result.plan.action == "conflict" else ""
            return {c.id: f"refused: {result.message}{hint}" for c in changes}
        if result.result == "pushed":  # the policy is the catalog's now
            self.shared.pop("plan")
        self.ctx.notes.append(f"tailnet {t.name}: {result.result}: {result.message}")
        return {}

    def _offline_failures(self) -> list[str]:
        """The policy's own tests, run offline on the catalog (read again only to push,
        by the engine's `load_lab`: a driver does not load catalogs itself)."""
        # lazy: keeps httpx out of start-up
        from blumeops.tailnet.push import PushError, offline_tests_fail

        lab = self.shared["load_lab"](self.shared["lab_file"])
        if lab is None:
            raise PushError("the catalog no longer loads: plan again")
        return offline_tests_fail(lab)

    def target_health(self) -> list[TargetHealth]:
        health, detail = self._plan().health()
        if not self.tailnet.push and self._plan().action == "update":
            detail += " (push is off: dry run)"
        return [TargetHealth(self.target, "policy", health, detail)]
