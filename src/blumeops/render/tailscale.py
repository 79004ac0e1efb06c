"""Tailscale: the tailnet policy file (HuJSON) derived by `tailnet.policy`.

The same `Policy` object feeds `blumeops acl test`, so what is rendered is what was
checked. HuJSON allows `//` comments, so the file carries the generated-file header.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from blumeops.catalog.model import Lab
from blumeops.catalog.resolve import tailnet_name
from blumeops.engine.resources import Resource
from blumeops.render import RenderContext
from blumeops.tailnet.policy import Policy, derive_policy


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False
    return True


def host_ips(lab: Lab) -> dict[str, str]:
    """Hosts whose declared address is an IP: Tailscale's `hosts` only takes IPs/CIDRs."""
    return {name: h.address for name, h in sorted(lab.hosts.items())
            if h.address and _is_ip(h.address)}


def _named_devices(policy: Policy) -> list[str]:
    """Device names (not tags, groups, users or '*') the grants and tests refer to."""
    names: set[str] = set()
    for grant in policy.grants:
        names.update(s for s in (*grant["src"], *grant["dst"]) if s in policy.devices)
    for test in policy.tests:
        if test["src"] in policy.devices:
            names.add(test["src"])
        for dst in (*test.get("accept", []), *test.get("deny", [])):
            host = dst.rpartition(":")[0]
            if host in policy.devices:
                names.add(host)
    return sorted(names)


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
    missing = [d for d in _named_devices(policy) if d not in doc["hosts"]]
    if missing:
        # Tailscale resolves a bare name in src/dst only through `hosts`.
        lines.append("// Devices named without an IP address (set `address:` to their "
                     "tailnet IP, or use tags): " + ", ".join(missing))
    return "\n".join(lines) + "\n" + json.dumps(doc, indent=2) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    if lab.tailnet is None:
        return []
    return [Resource(f"tailscale@{tailnet_name(lab)}", "policy", "policy",
                     policy_hujson(lab, ctx), "tailscale/policy.hujson")]
