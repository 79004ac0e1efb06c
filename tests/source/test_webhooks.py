"""Webhook verification and push parsing, with payloads shaped like the forges' own."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from blumeops.engine.controller import Controller, ControllerConfig
from blumeops.server.serve import ApiServer
from blumeops.source.webhooks import (
    MAX_BODY,
    Forge,
    PushEvent,
    WebhookError,
    parse_push,
    verify,
)
from polling import wait_for

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


SIGNATURE_HEADERS = ("X-Forgejo-Signature", "X-Gitea-Signature", "X-Hub-Signature-256")
SIGNED_BY = dict(zip(SIGNATURE_HEADERS, (Forge.FORGEJO, Forge.GITEA, Forge.GITHUB),
                     strict=True))


def signature(header: str, body: bytes, secret: str = SECRET) -> str:
    value = sign(body, secret)
    return f"sha256={value}" if header == "X-Hub-Signature-256" else value


@pytest.mark.parametrize("most", range(len(SIGNATURE_HEADERS) - 1))
def test_only_the_most_specific_signature_header_counts(most: int) -> None:
    """Each signature header present but the most specific one is right: refused; only
    the most specific one right: accepted. The others are never a second chance."""
    body = body_of(gitea_payload())
    present = SIGNATURE_HEADERS[most:]
    wrong_first = {h: signature(h, body, "another secret" if h == present[0] else SECRET)
                   for h in present}
    with pytest.raises(WebhookError) as info:
        verify(wrong_first, body, SECRET)
    assert info.value.status == 401
    right_first = {h: signature(h, body, SECRET if h == present[0] else "another secret")
                   for h in present}
    assert verify(right_first, body, SECRET) is SIGNED_BY[present[0]]


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


# -- what the controller does with these, over HTTP ----------------------------------------

def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=E", "-c", "user.email=e@example.com",
                           *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit(repo: Path, text: str) -> str:
    (repo / "lab.yaml").write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", text)
    return _git(repo, "rev-parse", "HEAD")


def test_webhook_for_another_repository_or_branch_triggers_no_sync(tmp_path: Path) -> None:
    """Signed pushes posted to a running controller: another repository, another branch
    or a tag is acknowledged (202) and fetches and syncs nothing; the followed branch of
    the followed repository is fetched and synced at once.

    The catalog is invalid on purpose: each sync is recorded (as `invalid`) and nothing
    is started, so the test sees every sync and leaves no lab behind.
    """
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    first = _commit(repo, "not_a_lab: 1\n")
    ctl = Controller(ControllerConfig(source_url=str(repo), state_dir=tmp_path / "state",
                                      interval=3600))
    ctl.start()
    try:
        with ApiServer(("127.0.0.1", 0), ctl, "token", SECRET) as server:
            def status() -> dict[str, Any]:
                return httpx.get(f"{server.url}/api/status", timeout=5).json()  # type: ignore[no-any-return]

            def syncs() -> list[dict[str, Any]]:
                return httpx.get(f"{server.url}/api/history").json()["syncs"]  # type: ignore[no-any-return]

            def post(payload: dict[str, Any]) -> httpx.Response:
                body = body_of(payload)
                return httpx.post(f"{server.url}/api/webhook", content=body,
                                  headers=forgejo_headers(body), timeout=10)

            wait_for(lambda: len(syncs()) == 1, 30, "the first sync")
            second = _commit(repo, "still_not_a_lab: 2\n")
            ours = {"full_name": "erich/lab", "clone_url": str(repo), "html_url": str(repo)}
            other = gitea_payload(after=second)
            other["repository"].update(
                full_name="eblume/dotfiles",
                clone_url="https://forge.ops.eblu.me/eblume/dotfiles.git",
                ssh_url="ssh://forgejo@forge.ops.eblu.me:2200/eblume/dotfiles.git",
                html_url="https://forge.ops.eblu.me/eblume/dotfiles")
            staging = gitea_payload(ref="refs/heads/staging", after=second)
            staging["repository"] = ours
            tag = gitea_payload(ref="refs/tags/main", after=second)
            tag["repository"] = ours
            wakes = ctl.state.wakes
            for payload, reason in ((other, "another repository"),
                                    (staging, "push to staging"), (tag, "following main")):
                resp = post(payload)
                assert resp.status_code == 202, resp.text
                assert resp.json()["accepted"] is False
                assert reason in resp.json()["reason"]
            # Answered without waking the loop (its only other pass is an hour away).
            assert ctl.state.wakes == wakes
            assert len(syncs()) == 1
            assert status()["newest"] == first  # not even fetched

            ours_push = gitea_payload(after=second)
            ours_push["repository"] = ours
            resp = post(ours_push)
            assert resp.status_code == 202 and resp.json() == {"accepted": True,
                                                                "commit": second}
            wait_for(lambda: len(syncs()) == 2, 30, "the sync the push asked for")
            assert syncs()[0]["commit"] == second and status()["newest"] == second
            metrics = httpx.get(f"{server.url}/metrics").text
            assert 'blumeops_webhook_requests_total{result="ignored"} 3.0' in metrics
            assert 'blumeops_webhook_requests_total{result="accepted"} 1.0' in metrics
    finally:
        ctl.stop()
