"""Webhook verification and push parsing, with payloads shaped like the forges' own."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from blumeops.source.git import GitSource
from blumeops.source.webhooks import (
    MAX_BODY,
    Forge,
    PushEvent,
    WebhookError,
    parse_push,
    verify,
)

SECRET = "s3cret-webhook"
AFTER = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
BEFORE = "0f1e2d3c4b5a69788796a5b4c3d2e1f012345678"


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea_payload(ref: str = "refs/heads/main", after: str = AFTER) -> dict[str, Any]:
    """A Gitea/Forgejo push payload (trimmed, same shape)."""
    return {
        "ref": ref,
        "before": BEFORE,
        "after": after,
        "compare_url": f"https://forge.ops.eblu.me/eblume/blumeops/compare/{BEFORE}...{after}",
        "commits": [{
            "id": after,
            "message": "grafana: 11.4.0\n",
            "url": f"https://forge.ops.eblu.me/eblume/blumeops/commit/{after}",
            "author": {"name": "Erich Blume", "email": "erich@example.com",
                       "username": "eblume"},
            "timestamp": "2025-01-05T10:00:00Z",
            "added": [], "removed": [], "modified": ["lab.yaml"],
        }],
        "total_commits": 1,
        "repository": {
            "id": 3,
            "owner": {"id": 1, "login": "eblume", "username": "eblume"},
            "name": "blumeops",
            "full_name": "eblume/blumeops",
            "private": True,
            "html_url": "https://forge.ops.eblu.me/eblume/blumeops",
            "ssh_url": "ssh://forgejo@forge.ops.eblu.me:2200/eblume/blumeops.git",
            "clone_url": "https://forge.ops.eblu.me/eblume/blumeops.git",
            "default_branch": "main",
        },
        "pusher": {"id": 1, "login": "eblume", "full_name": "Erich Blume",
                   "email": "erich@example.com", "username": "eblume"},
        "sender": {"id": 1, "login": "eblume", "username": "eblume"},
    }


def github_payload(ref: str = "refs/heads/main") -> dict[str, Any]:
    """A GitHub push payload (trimmed, same shape)."""
    return {
        "ref": ref,
        "before": BEFORE,
        "after": AFTER,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {
            "id": 42,
            "name": "blumeops",
            "full_name": "eblume/blumeops",
            "html_url": "https://github.com/eblume/blumeops",
            "url": "https://api.github.com/repos/eblume/blumeops",
            "git_url": "git://github.com/eblume/blumeops.git",
            "ssh_url": "git@github.com:eblume/blumeops.git",
            "clone_url": "https://github.com/eblume/blumeops.git",
            "default_branch": "main",
        },
        "pusher": {"name": "eblume", "email": "erich@example.com"},
        "sender": {"login": "eblume", "id": 1},
        "head_commit": {"id": AFTER, "message": "grafana: 11.4.0"},
    }


def forgejo_headers(body: bytes, event: str = "push") -> dict[str, str]:
    """What Forgejo sends: its own headers plus Gitea's and GitHub's for compatibility."""
    sig = sign(body)
    return {
        "Content-Type": "application/json",
        "X-Forgejo-Delivery": "d1", "X-Forgejo-Event": event, "X-Forgejo-Event-Type": event,
        "X-Forgejo-Signature": sig,
        "X-Gitea-Delivery": "d1", "X-Gitea-Event": event, "X-Gitea-Event-Type": event,
        "X-Gitea-Signature": sig,
        "X-GitHub-Delivery": "d1", "X-GitHub-Event": event, "X-GitHub-Event-Type": event,
        "X-Hub-Signature-256": f"sha256={sig}",
    }


def gitea_headers(body: bytes, event: str = "push") -> dict[str, str]:
    sig = sign(body)
    return {
        "Content-Type": "application/json",
        "X-Gitea-Event": event, "X-Gitea-Signature": sig,
        "X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={sig}",
    }


def github_headers(body: bytes, event: str = "push") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature": "sha1=ignored",
        "X-Hub-Signature-256": f"sha256={sign(body)}",
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


# -- verify -------------------------------------------------------------------------------

def test_forgejo_signature() -> None:
    body = body_of(gitea_payload())
    assert verify(forgejo_headers(body), body, SECRET) is Forge.FORGEJO


def test_gitea_signature() -> None:
    body = body_of(gitea_payload())
    assert verify(gitea_headers(body), body, SECRET) is Forge.GITEA
    only = {"X-Gitea-Event": "push", "X-Gitea-Signature": sign(body)}
    assert verify(only, body, SECRET) is Forge.GITEA


def test_github_signature() -> None:
    body = body_of(github_payload())
    assert verify(github_headers(body), body, SECRET) is Forge.GITHUB


def test_forge_from_signature_when_no_event_header() -> None:
    body = b"{}"
    assert verify({"X-Forgejo-Signature": sign(body)}, body, SECRET) is Forge.FORGEJO
    assert verify({"X-Hub-Signature-256": f"sha256={sign(body)}"}, body, SECRET) is Forge.GITHUB


@pytest.mark.parametrize("headers", [github_headers, gitea_headers, forgejo_headers])
def test_headers_are_case_insensitive(headers: Any) -> None:
    body = body_of(gitea_payload())
    lower = {k.lower(): v for k, v in headers(body).items()}
    upper = {k.upper(): v for k, v in headers(body).items()}
    assert verify(lower, body, SECRET) == verify(upper, body, SECRET)
    assert parse_push(lower, body) == parse_push(upper, body)


def test_uppercase_hex_signature_is_accepted() -> None:
    body = b'{"x": 1}'
    assert verify({"X-Gitea-Signature": sign(body).upper()}, body, SECRET) is Forge.GITEA


@pytest.mark.parametrize("make", [github_headers, gitea_headers, forgejo_headers])
def test_wrong_secret_is_401(make: Any) -> None:
    body = body_of(gitea_payload())
    with pytest.raises(WebhookError) as info:
        verify(make(body), body, "another secret")
    assert info.value.status == 401


def test_tampered_body_is_401() -> None:
    body = body_of(gitea_payload())
    headers = forgejo_headers(body)
    with pytest.raises(WebhookError) as info:
        verify(headers, body.replace(b"main", b"evil"), SECRET)
    assert info.value.status == 401


def test_missing_signature_is_401() -> None:
    body = body_of(gitea_payload())
    for headers in ({"X-Gitea-Event": "push"}, {}, {"X-Hub-Signature": "sha1=abc"}):
        with pytest.raises(WebhookError) as info:
            verify(headers, body, SECRET)
        assert info.value.status == 401
        assert "missing signature" in info.value.message


@pytest.mark.parametrize("value", ["", "sha256=", "zz", "sha1=" + "0" * 40, "é" * 64,
                                   "sha256=" + "0" * 64])
def test_malformed_signature_is_401(value: str) -> None:
    body = b"{}"
    for header in ("X-Hub-Signature-256", "X-Gitea-Signature"):
        with pytest.raises(WebhookError) as info:
            verify({header: value}, body, SECRET)
        assert info.value.status == 401


def test_github_signature_needs_prefix() -> None:
    body = b"{}"
    with pytest.raises(WebhookError) as info:
        verify({"X-Hub-Signature-256": sign(body)}, body, SECRET)
    assert info.value.status == 401


def test_secret_not_configured_is_503() -> None:
    body = body_of(gitea_payload())
    with pytest.raises(WebhookError) as info:
        verify(forgejo_headers(body), body, "")
    assert (info.value.status, info.value.message) == (503, "webhook secret not configured")


def test_oversized_body_is_413() -> None:
    body = b" " * (MAX_BODY + 1)
    headers = {"X-Gitea-Event": "push", "X-Gitea-Signature": sign(body)}
    for call in (lambda: verify(headers, body, SECRET), lambda: parse_push(headers, body)):
        with pytest.raises(WebhookError) as info:
            call()
        assert info.value.status == 413
    assert MAX_BODY == 1024 * 1024


# -- parse_push ---------------------------------------------------------------------------

def test_parse_forgejo_push() -> None:
    body = body_of(gitea_payload())
    event = parse_push(forgejo_headers(body), body)
    assert event == PushEvent(
        forge=Forge.FORGEJO,
        ref="refs/heads/main",
        branch="main",
        after=AFTER,
        repository=[
            "eblume/blumeops",
            "https://forge.ops.eblu.me/eblume/blumeops.git",
            "ssh://forgejo@forge.ops.eblu.me:2200/eblume/blumeops.git",
            "https://forge.ops.eblu.me/eblume/blumeops",
        ],
        pusher="eblume",
        deleted=False,
    )


def test_parse_gitea_push() -> None:
    body = body_of(gitea_payload(ref="refs/heads/feature/x"))
    event = parse_push(gitea_headers(body), body)
    assert event is not None
    assert (event.forge, event.branch) == (Forge.GITEA, "feature/x")


def test_parse_github_push() -> None:
    body = body_of(github_payload())
    event = parse_push(github_headers(body), body)
    assert event is not None
    assert event.forge is Forge.GITHUB
    assert event.branch == "main" and event.after == AFTER
    assert event.pusher == "eblume"
    assert "git@github.com:eblume/blumeops.git" in event.repository
    assert "https://api.github.com/repos/eblume/blumeops" not in event.repository


@pytest.mark.parametrize("make", [github_headers, gitea_headers, forgejo_headers])
def test_ping_is_acknowledged(make: Any) -> None:
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1,
                       "hook": {"type": "Repository"}}).encode()
    headers = make(body, event="ping")
    verify(headers, body, SECRET)
    assert parse_push(headers, body) is None


def test_ping_without_event_header() -> None:
    assert parse_push({}, b'{"zen": "hi", "hook_id": 7}') is None


@pytest.mark.parametrize("event", ["issues", "pull_request", "create", "release"])
def test_other_events_are_ignored(event: str) -> None:
    body = body_of(gitea_payload())
    assert parse_push(forgejo_headers(body, event=event), body) is None


def test_tag_push_has_no_branch() -> None:
    body = body_of(gitea_payload(ref="refs/tags/v1.0"))
    event = parse_push(forgejo_headers(body), body)
    assert event is not None and event.branch is None and event.ref == "refs/tags/v1.0"


def test_branch_deletion() -> None:
    payload = github_payload(ref="refs/heads/old")
    payload.update(after="0" * 40, deleted=True)
    body = body_of(payload)
    event = parse_push(github_headers(body), body)
    assert event is not None and event.deleted and event.branch == "old"


@pytest.mark.parametrize("body", [
    b"not json", b"{", b"\xff\xfe", b"[]", b'"push"', b"null",
])
def test_malformed_json_is_400(body: bytes) -> None:
    with pytest.raises(WebhookError) as info:
        parse_push(forgejo_headers(body), body)
    assert info.value.status == 400


@pytest.mark.parametrize("change", [
    lambda p: p.pop("ref"),
    lambda p: p.pop("after"),
    lambda p: p.pop("repository"),
    lambda p: p.update(ref=7),
    lambda p: p.update(after="not-a-sha"),
    lambda p: p.update(after=AFTER[:12]),
    lambda p: p.update(repository="eblume/blumeops"),
    lambda p: p.update(repository={"id": 1, "name": "blumeops"}),
])
def test_missing_fields_are_400(change: Any) -> None:
    payload = gitea_payload()
    change(payload)
    body = body_of(payload)
    with pytest.raises(WebhookError) as info:
        parse_push(forgejo_headers(body), body)
    assert info.value.status == 400
    assert info.value.message


def test_sha256_repositories() -> None:
    after = "ab" * 32
    body = body_of(gitea_payload(after=after))
    event = parse_push(forgejo_headers(body), body)
    assert event is not None and event.after == after


# -- what the controller decides with these ------------------------------------------------

def test_event_designates_source_and_branch(tmp_path: Path) -> None:
    """The controller's test: same repository and same branch -> fetch now; else ignore."""
    source = GitSource("ssh://forgejo@indri.tail8d86e.ts.net:2200/eblume/blumeops.git",
                       "main", ".", tmp_path / "cache")

    def wakes(payload: dict[str, Any]) -> bool:
        body = body_of(payload)
        headers = forgejo_headers(body)
        verify(headers, body, SECRET)
        event = parse_push(headers, body)
        return (event is not None and event.branch == source.branch
                and source.repo_matches(event.repository))

    assert wakes(gitea_payload())
    assert not wakes(gitea_payload(ref="refs/heads/staging"))
    assert not wakes(gitea_payload(ref="refs/tags/main"))
    other = gitea_payload()
    other["repository"].update(
        full_name="eblume/dotfiles",
        clone_url="https://forge.ops.eblu.me/eblume/dotfiles.git",
        ssh_url="ssh://forgejo@forge.ops.eblu.me:2200/eblume/dotfiles.git",
        html_url="https://forge.ops.eblu.me/eblume/dotfiles",
    )
    assert not wakes(other)
