"""JSON bodies are parsed with a depth limit: deep nesting is the client's 400, never a
500 (the old server let json.loads hit RecursionError)."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from blumeops.engine.controller import Controller
from blumeops.server.jsonbody import json_depth, parse_object
from blumeops.server.responses import ApiError

from .serverlab import SECRET, TOKEN, serving

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/api/sync", "/api/rollback"])
def test_deeply_nested_body_is_400(controller: Controller, path: str) -> None:
    with serving(controller) as server:
        for body in (b"[" * 50_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
                     b'{"revision": ' + b"[" * 33 + b"]" * 33 + b"}"):
            resp = httpx.post(f"{server.url}{path}", content=body, headers=AUTH, timeout=10)
            assert resp.status_code == 400, (body[:20], resp.text)
            assert "levels deep" in resp.json()["error"]


def test_nesting_within_the_limit_is_parsed(controller: Controller) -> None:
    with serving(controller) as server:
        body = {"revision": "main", "extra": [[[{"a": "]]]}}}"}]]]}
        resp = httpx.post(f"{server.url}/api/rollback", json=body, headers=AUTH, timeout=10)
        # Parsed: the revision reached git, which has not fetched (400 for that reason).
        assert resp.status_code == 400
        assert "levels deep" not in resp.text and "not JSON" not in resp.text


def test_deeply_nested_signed_webhook_is_400(controller: Controller) -> None:
    body = b'{"ref": "refs/heads/main", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with serving(controller) as server:
        resp = httpx.post(f"{server.url}/api/webhook", content=body, timeout=10,
                          headers={"X-Forgejo-Event": "push", "X-Forgejo-Signature": sig})
        assert resp.status_code == 400, resp.text
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'blumeops_webhook_requests_total{result="bad_request"} 1.0' in metrics


def test_json_depth() -> None:
    assert json_depth(b"1") == 0
    assert json_depth(b"{}") == 1
    assert json_depth(b'[[1], {"a": [2]}]') == 3
    assert json_depth(b'["[[[[", "\\"[[", {"k]": "}}}"}]') == 2  # brackets in strings
    assert json_depth("[[1]]".encode("utf-16")) == 2  # the encodings json.loads reads
    assert json_depth(b"[" * 100_000) == 100_000


def test_parse_object_refusals() -> None:
    assert parse_object(b"  ", 32) == {}
    assert parse_object(b'{"a": [1]}', 32) == {"a": [1]}
    for raw, why in ((b"[1]", "JSON object"), (b"{", "not JSON"),
                     (json.dumps({"a": [[[[1]]]]}).encode(), "levels deep")):
        with pytest.raises(ApiError, match=why) as info:
            parse_object(raw, 4)
        assert info.value.status == 400
