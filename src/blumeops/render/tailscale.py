"""Tailscale: the tailnet policy file (HuJSON) derived by `tailnet.policy`.

The same `Policy` object feeds `blumeops acl test`, so what is rendered is what was
checked. HuJSON allows `//` comments, so the file carries the generated-file header.
"""

from __future__ import annotations

import json
from typing import Any

from blumeops.catalog.model import Lab
from blumeops.catalog.resolve import tailnet_name
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext
from blumeops.tailnet.policy import Policy, derive_policy, device_tag, host_ips


def policy_document(lab: Lab, policy: Policy | None = None) -> dict[str, Any]:
    """The policy as the data Tailscale's API takes (keys in a fixed order)."""
    policy = policy or derive_policy(lab)
    return {
        "groups": dict(sorted(policy.groups.items())),
        "tagOwners": dict(sorted(policy.tag_owners.items())),
        "hosts": host_ips(lab),
        "grants": [{"src": g["src"], "dst": g["dst"], "ip": g["ip"]} for g in policy.grants],
        "tests": [{k: t[k] for k in ("src", "accept", "deny") if t.get(k)}
                  for t in policy.tests],
    }


def policy_hujson(lab: Lab, ctx: RenderContext) -> str:
    policy = derive_policy(lab)
    doc = policy_document(lab, policy)
    lines = [ctx.header("//").rstrip("\n"), f"// Tailnet: {tailnet_name(lab)}"]
    used = {x for g in policy.grants for x in (*g["src"], *g["dst"])}
    used |= {t["src"] for t in policy.tests}
    used |= {d.rpartition(":")[0] for t in policy.tests for d in (*t["accept"], *t["deny"])}
    tagged = [d for d in sorted(policy.devices)
              if d not in doc["hosts"] and device_tag(d) in used]
    if tagged:
        # Tailscale resolves bare names only through `hosts`: devices go by their own tag.
        lines.append("// Devices are named by their own tag: advertise it on each host "
                     "(tailscale up --advertise-tags=tag:NAME); ingresses carry it: "
                     + ", ".join(device_tag(d) for d in tagged))
    return "\n".join(lines) + "\n" + json.dumps(doc, indent=2) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    if lab.tailnet is None:
        return []
    return [Resource(f"tailscale@{tailnet_name(lab)}", "policy", "policy",
                     policy_hujson(lab, ctx), "tailscale/policy.hujson")]
