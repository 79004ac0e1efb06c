"""Forge push webhooks: check the signature, then read which branch moved to which commit.

Pure functions of (headers, body) so the HTTP server stays thin and this stays testable.
The signature is checked over the raw body before anything parses it: an unsigned or
wrongly signed request triggers nothing, whatever it contains.

Forgejo sends X-Forgejo-*, X-Gitea-* and X-GitHub-*-style headers together, Gitea sends
X-Gitea-* and X-GitHub-* ones, GitHub only its own: the most specific one present wins.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_BODY = 1024 * 1024  # bytes; a push payload is a few KiB, even with many commits
ZERO_SHA = "0" * 40


class Forge(StrEnum):
    FORGEJO = "forgejo"
    GITEA = "gitea"
    GITHUB = "github"


class WebhookError(Exception):
    """A request to refuse: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PushEvent:
    """A branch or tag moved. `branch` is None for tags; `deleted` when the ref was removed."""

    forge: Forge
    ref: str
    branch: str | None
    after: str
    repository: list[str] = field(default_factory=list)  # full_name and clone/ssh/html URLs
    pusher: str = ""
    deleted: bool = False


# Most specific first: (forge, signature header, event header).
_FORGES = (
    (Forge.FORGEJO, "x-forgejo-signature", "x-forgejo-event"),
    (Forge.GITEA, "x-gitea-signature", "x-gitea-event"),
    (Forge.GITHUB, "x-hub-signature-256", "x-github-event"),
)
_REPO_FIELDS = ("full_name", "clone_url", "ssh_url", "html_url", "git_url")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _check_size(body: bytes) -> None:
    if len(body) > MAX_BODY:
        raise WebhookError(413, f"payload larger than {MAX_BODY} bytes")


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Forge:
    """The forge that signed `body` with `secret`, or WebhookError (401 when unsigned/wrong).

    The signature checked is the most specific header present; the forge reported is
    the most specific event header present (a Forgejo push carries Gitea headers too).
    """
    if not secret:
        raise WebhookError(503, "webhook secret not configured")
    _check_size(body)
    h = _lower(headers)
    signed = [(forge, header) for forge, header, _ in _FORGES if header in h]
    if not signed:
        raise WebhookError(401, "missing signature (X-Forgejo-Signature, X-Gitea-Signature "
                                "or X-Hub-Signature-256)")
    forge, sig_header = signed[0]
    given = h[sig_header].strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256="):]
    elif sig_header == "x-hub-signature-256":
        raise WebhookError(401, "bad signature: X-Hub-Signature-256 must start with sha256=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # compare_digest on bytes: a non-ASCII header must not raise TypeError (a 500).
    if not hmac.compare_digest(given.lower().encode("utf-8", "replace"), expected.encode()):
        raise WebhookError(401, "bad signature")
    return _forge(h) or forge


def _forge(h: Mapping[str, str]) -> Forge | None:
    for forge, _, event_header in _FORGES:
        if event_header in h:
            return forge
    return None


def _event(h: Mapping[str, str]) -> str | None:
    for _, _, event_header in _FORGES:
        if event_header in h:
            return h[event_header].strip().lower()
    return None


def parse_push(headers: Mapping[str, str], body: bytes) -> PushEvent | None:
    """The push in a (verified) request, or None for ping and other events.

    A request without an event header is read as a push: hand-made test hooks often omit it.
    """
    _check_size(body)
    h = _lower(headers)
    event = _event(h)
    if event is not None and event != "push":
        return None  # ping, issues, releases...: acknowledged, nothing to do
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(400, f"payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookError(400, "payload is not a JSON object")
    if event is None and "zen" in data and "hook_id" in data:
        return None  # a GitHub ping without its header
    ref = _str(data, "ref")
    after = _str(data, "after").lower()
    if not all(c in "0123456789abcdef" for c in after) or len(after) not in (40, 64):
        raise WebhookError(400, f"'after' is not a commit id: {after[:80]!r}")
    repo = data.get("repository")
    if not isinstance(repo, dict):
        raise WebhookError(400, "payload has no 'repository' object")
    names = [v for k in _REPO_FIELDS if isinstance(v := repo.get(k), str) and v]
    if not names:
        raise WebhookError(400, "payload 'repository' has no full_name or URL")
    branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else None
    return PushEvent(
        forge=_forge(h) or Forge.GITHUB,
        ref=ref,
        branch=branch,
        after=after,
        repository=names,
        pusher=_pusher(data.get("pusher")),
        deleted=bool(data.get("deleted")) or set(after) == {"0"},
    )


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(400, f"payload has no {key!r} string")
    return value


def _pusher(pusher: object) -> str:
    """Gitea/Forgejo: login/username; GitHub: name."""
    if not isinstance(pusher, dict):
        return ""
    for key in ("login", "username", "name", "email"):
        value = pusher.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
