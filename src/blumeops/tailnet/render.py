"""Tailscale: the tailnet policy file (HuJSON) and, per host, how it joins the tailnet.

The same `Policy` object feeds `blumeops acl test`, so what is rendered is what was
checked. HuJSON allows `//` comments, so the file carries the generated-file header.

Per host with tailnet settings (tailnet.devices, or SSH rules that reach it) a shell script
`tailscale/devices/HOST.sh` says how the host joins: `tailscale up` with its tags, `--ssh`
when SSH rules reach it, and its `tailscale serve` entries as the CLI commands Tailscale
documents. The auth key goes by reference: the script reads it from a file
(`--auth-key=file:PATH`), never from its command line. blumeops renders this script; it
does not run it.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from blumeops.catalog.model import Lab, Serve
from blumeops.catalog.resolve import tailnet_name
from blumeops.core.resources import Resource
from blumeops.render import RenderContext
from blumeops.tailnet.evaluate import matches, resolve
from blumeops.tailnet.policy import Policy, derive_policy, device_tag


def policy_document(lab: Lab, policy: Policy | None = None) -> dict[str, Any]:
    """The policy as the data Tailscale's API takes (keys in a fixed order).

    Sections the lab does not use are left out, so a lab without SSH rules keeps
    Tailscale's default of no Tailscale SSH access.
    """
    policy = policy or derive_policy(lab)
    doc: dict[str, Any] = {
        "groups": dict(sorted(policy.groups.items())),
        "tagOwners": dict(sorted(policy.tag_owners.items())),
        "hosts": dict(sorted(policy.hosts.items())),
        "grants": [{k: g[k] for k in ("src", "dst", "ip", "app") if k in g}
                   for g in policy.grants],
    }
    if policy.ssh:
        doc["ssh"] = policy.ssh
    if policy.auto_approvers:
        doc["autoApprovers"] = policy.auto_approvers
    doc["tests"] = [{k: t[k] for k in ("src", "proto", "accept", "deny") if t.get(k)}
                    for t in policy.tests]
    if policy.ssh_tests:
        doc["sshTests"] = [{k: t[k] for k in ("src", "dst", "accept", "check", "deny")
                            if t.get(k)} for t in policy.ssh_tests]
    return doc


def policy_hujson(lab: Lab, ctx: RenderContext, policy: Policy | None = None) -> str:
    policy = policy or derive_policy(lab)
    doc = policy_document(lab, policy)
    lines = [ctx.header("//").rstrip("\n"), f"// Tailnet: {tailnet_name(lab)}"]
    used = {x for g in policy.grants for x in (*g["src"], *g["dst"])}
    used |= {x for s in policy.ssh for x in (*s["src"], *s["dst"])}
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


def ssh_reaches(policy: Policy, host: str) -> bool:
    """Whether any SSH rule names this host as a destination (it must run `--ssh`)."""
    target = resolve(policy, host)
    return any(matches(policy, d, target, target.user) for s in policy.ssh for d in s["dst"])


def serve_command(entry: Serve) -> list[str]:
    """One `tailscale serve` entry as the command Tailscale documents for it."""
    args = ["tailscale", "funnel" if entry.funnel else "serve", "--bg",
            f"--{entry.protocol}={entry.port}"]
    if entry.protocol in ("http", "https") and entry.path != "/":
        args.append(f"--set-path={entry.path}")
    return [*args, entry.target]


def device_script(lab: Lab, ctx: RenderContext, policy: Policy, host: str) -> str:
    """How a host joins the tailnet: tags, SSH server, auth key by file, serve entries."""
    spec = lab.tailnet.devices.get(host) if lab.tailnet else None
    device = policy.devices[host]
    lines = ["#!/bin/sh", ctx.header("#").rstrip("\n"),
             f"# How {host} joins {tailnet_name(lab)}. blumeops renders this; it does not run it.",
             "set -eu"]
    up = ["tailscale", "up"]
    if device.tags:
        up.append("--advertise-tags=" + ",".join(device.tags))
    if ssh_reaches(policy, host):
        up.append("--ssh")
    if spec is not None and spec.auth_key:
        lines.append(f"# Auth key: {spec.auth_key} (fetch it into the file, mode 0600).")
        up.append('--auth-key="file:${TS_AUTHKEY_FILE:?path of the auth key file}"')
    if spec is not None and spec.owner:
        lines.append(f"# Owned by {spec.owner}: log in as that user, no tags.")
    lines.append(" ".join(a if a.startswith("--auth-key") else shlex.quote(a) for a in up))
    for entry in spec.serve if spec is not None else []:
        lines.append(shlex.join(serve_command(entry)))
    return "\n".join(lines) + "\n"


def render(lab: Lab, ctx: RenderContext) -> list[Resource]:
    if lab.tailnet is None:
        return []
    policy = derive_policy(lab)
    out = [Resource(f"tailscale@{tailnet_name(lab)}", "policy", "policy",
                    policy_hujson(lab, ctx, policy), "tailscale/policy.hujson")]
    for host in sorted(lab.hosts):
        if host in lab.tailnet.devices or (policy.ssh and ssh_reaches(policy, host)):
            out.append(Resource(f"tailscale@{tailnet_name(lab)}", "device", host,
                                device_script(lab, ctx, policy, host),
                                f"tailscale/devices/{host}.sh"))
    return out
