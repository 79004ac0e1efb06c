"""The tailnet's catalog rules: the derived policy is one Tailscale accepts, tags and
operators are owned, dependent services may reach each other, devices are declared."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from blumeops.catalog.diagnostics import Diagnostic, Marks, did_you_mean, unknown
from blumeops.catalog.model import SECRET_REF, Lab
from blumeops.tailnet.evaluate import UnknownTarget
from blumeops.tailnet.evaluate import check as acl_check
from blumeops.tailnet.policy import as_tag, cross_dependencies, derive_policy, devices
from blumeops.tailnet.validate import problems

_SECTION_KEYS = {"sshTests": ("sshTests", "ssh_tests"),
                 "autoApprovers": ("autoApprovers", "auto_approvers")}


def tailnet_at(marks: Marks, section: str, index: int | None = None) -> tuple[str | int, ...]:
    """The catalog path of a tailnet section item, under whichever spelling the file used."""
    for key in _SECTION_KEYS.get(section, (section,)):
        if ("tailnet", key) in marks:
            return ("tailnet", key) if index is None else ("tailnet", key, index)
    return ("tailnet", section) if index is None else ("tailnet", section, index)


def tailnet_policy(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """The derived policy must be one Tailscale's API accepts (tailnet/validate.py)."""
    if lab.tailnet is None:
        return

    policy = derive_policy(lab)
    for problem in problems(policy):
        section, index = problem.section, problem.index
        where = f"{section}[{index}]"
        if section == "autoApprovers":
            path = tailnet_at(marks, section)
            where = section
        elif section == "grants" and policy.grant_origin[index] is None:
            path, where = ("tailnet",), "a derived grant (from routes and audiences)"
            for name, svc in lab.services.items():  # point at the audience that caused it
                hit = next((j for j, who in enumerate(svc.audience)
                            if f"'{who}'" in problem.message), None)
                if hit is not None:
                    path, where = ("services", name, "audience", hit), f"service '{name}' audience"
                    break
        else:
            if section == "grants":
                index = policy.grant_origin[index] or 0
                where = f"grants[{index}]"
            path = tailnet_at(marks, section, index)
        yield marks.diag(path, "tailnet-policy", f"tailnet {where}: {problem.message}")


def _policy_tags(lab: Lab) -> Iterator[tuple[str, int | None, str]]:
    """(catalog section, index) and each tag the lab's own tailnet rules name."""
    assert lab.tailnet is not None
    t = lab.tailnet

    def tags(values: Iterable[str]) -> Iterator[str]:
        for v in values:
            host = v.rpartition(":")[0] if v.count(":") > 1 else v
            if host.startswith("tag:"):
                yield host

    sections: list[tuple[str, list[list[str]]]] = [
        ("grants", [[*g.src, *g.dst] for g in t.grants]),
        ("tests", [[x.src, *x.accept, *x.deny] for x in t.tests]),
        ("ssh", [[*s.src, *s.dst] for s in t.ssh]),
        ("sshTests", [[x.src, *x.dst] for x in t.ssh_tests]),
    ]
    for section, items in sections:
        for i, values in enumerate(items):
            for tag in tags(values):
                yield section, i, tag
    if t.auto_approvers is not None:
        who = [*(w for ws in t.auto_approvers.routes.values() for w in ws),
               *t.auto_approvers.exit_node]
        for tag in tags(who):
            yield "autoApprovers", None, tag


def tailnet_tags(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A tag the policy names must be carried by some host, ingress or service.

    A rule about a tag nobody carries grants nothing: usually a misspelt tag or a device
    that was renamed, and the access the rule meant to give silently is not there.
    """
    if lab.tailnet is None:
        return

    carried = {t for d in devices(lab).values() for t in d.tags}
    if lab.clusters:
        carried.add(as_tag(lab.tailnet.operator_tag))
    for section, index, tag in _policy_tags(lab):
        if tag in carried:
            continue
        path = tailnet_at(marks, section, index)
        yield marks.diag(path, "unused-tag",
                         f"tag '{tag}' in tailnet {section} is carried by no host, ingress "
                         "or service" + did_you_mean(tag, carried)
                         + "; add it to a host's or service's tags, or fix the rule")


def operator_tags(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """The Tailscale operator can only apply tags it owns (tagOwners lists its tag).

    Otherwise the ingress device comes up without the tag the policy names it by, and every
    grant to it silently stops matching.
    """
    if lab.tailnet is None:
        return

    policy = derive_policy(lab)
    op = policy.operator_tag
    declared = {as_tag(k): k for k in lab.tailnet.tag_owners}
    for device in policy.devices.values():
        if device.operator is None:
            continue
        for tag in device.tags:
            owners = policy.tag_owners.get(tag, [])
            if op in owners:
                continue
            service = next((n for n, s in lab.services.items() if s.kubernetes
                            and tag in {as_tag(x) for x in s.tags}), None)
            if service is not None:
                path: tuple[str | int, ...] = ("services", service, "tags")
            else:
                path = ("tailnet", "tag_owners", declared.get(tag, tag))
            yield marks.diag(path, "operator-tag",
                             f"ingress '{device.name}' (cluster '{device.operator}') would "
                             f"not carry '{tag}': the Tailscale operator ({op}) does not own it "
                             f"(tagOwners: {', '.join(owners) or 'none'}); add {op} to its "
                             "owners")


def dependency_reach(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """A dependency on another host or cluster must be reachable under the tailnet policy.

    A CI runner in one cluster that needs the forge on a host fails at its first clone if the
    tailnet does not let its node reach the forge; say so at validate time instead.
    """
    if lab.tailnet is None or lab.tailnet.derive_grants:
        return  # derived grants let each dependent reach its dependency

    policy = derive_policy(lab)
    for name, i, dep, here, ends in cross_dependencies(lab, policy.devices):
        if not ends:
            continue
        try:
            ok = any(acl_check(policy, here[0], f"{d}:{p}").allowed for d, p in ends)
        except UnknownTarget:
            continue
        if not ok:
            tried = ", ".join(f"{d}:{p}" for d, p in ends)
            where = f"cluster '{here[1]}' on host" if here[1] else "host"
            yield marks.diag(("services", name, "depends_on", i), "unreachable-dependency",
                             f"service '{name}' ({where} '{here[0]}') depends on '{dep}', "
                             f"but the tailnet policy lets '{here[0]}' reach none of {tried}; "
                             "add a grant")


def tailnet_devices(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Per-host tailnet settings name declared hosts; auth keys are references, never keys."""
    if lab.tailnet is None:
        return
    for name, device in lab.tailnet.devices.items():
        at = ("tailnet", "devices", name)
        if name not in lab.hosts:
            yield marks.diag(at, "unknown-reference", unknown("host", name, lab.hosts))
        if device.auth_key is not None and not SECRET_REF.match(device.auth_key):
            yield marks.diag((*at, "auth_key"), "secret-ref",
                             f"auth key of '{name}' must be a reference ('vault:NAME' or "
                             "'op://VAULT/ITEM/FIELD'), never the key itself")
        if device.owner is not None and name in lab.hosts and lab.hosts[name].tags:
            yield marks.diag((*at, "owner"), "owned-and-tagged",
                             f"host '{name}' has an owner and tags; a tagged device belongs to "
                             "no user in Tailscale: drop one")
