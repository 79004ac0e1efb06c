"""What every native unit format (supervisord program, systemd unit, launchd plist, NixOS
module) takes from a service the same way: its secret references, one-line text, and
declared paths that cannot leave the render directory."""

from __future__ import annotations

import posixpath

from blumeops.catalog.model import Service


def secret_refs(svc: Service) -> tuple[tuple[str, str], ...]:
    """(NAME, reference) pairs, sorted: what apply resolves and delivers."""
    return tuple(sorted((name, ref.ref) for name, ref in svc.secrets.items()))


def one_line(text: str | None) -> str:
    """A description safe to put in a one-line comment."""
    return " ".join((text or "").split())


def safe_relpath(path: str) -> str:
    """A declared file path as a relative path that cannot leave the render directory."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p and p != ".."]
    return "/".join(parts) or "_"
