"""Push the rendered tailnet policy to the Tailscale API, never over an unseen edit.

The API keeps one policy file per tailnet with an ETag. blumeops remembers the ETag (and
text) of the policy it last pushed or accepted, in a 0600 file in the state dir. `plan`
GETs the live policy: when its ETag is not the remembered one, someone edited it (in the
admin console, say) and the plan shows that edit as a diff; `apply` then refuses until
the user chooses: `overwrite` (push ours anyway) or `take_theirs` (accept the live policy
as seen; bring the edit into the catalog). A push is sent only after the offline policy
tests pass and Tailscale's validate endpoint accepts it, with `If-Match` so an edit that
lands between our GET and our POST gets a 412, not overwritten.

The API key (or OAuth client secret) lives only in memory and in the Authorization
header: never in a message, the plan, the state file or a log.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from blumeops.core.health import Health
from blumeops.secrets.errors import SecretError

API_URL = "https://api.tailscale.com"
API_URL_ENV = "BLUMEOPS_TAILSCALE_API"  # another API base (a stand-in, a proxy)
KEY_ENV = "TAILSCALE_API_KEY"  # used when the catalog names no credentials
TIMEOUT = 15.0
HUJSON = "application/hujson"


class PushError(Exception):
    """The policy could not be read, validated or pushed; the message says why."""


class Conflict(PushError):
    """The live policy changed since blumeops last saw it."""


@dataclass(frozen=True)
class LivePolicy:
    text: str
    etag: str


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class TailscaleClient:
    """The three calls of the policy-file API, authenticated with a bearer token."""

    def __init__(self, token: str, base_url: str | None = None, tailnet: str = "-",
                 timeout: float = TIMEOUT, transport: httpx.BaseTransport | None = None,
                 ) -> None:
        self._secrets = [token]
        base = (base_url or os.environ.get(API_URL_ENV) or API_URL).rstrip("/")
        self.base_url = base
        self._http = httpx.Client(base_url=f"{base}/api/v2/tailnet/{tailnet}",
                                  headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout, transport=transport)

    @classmethod
    def with_oauth(cls, client_id: str, client_secret: str, base_url: str | None = None,
                   tailnet: str = "-") -> TailscaleClient:
        """A client holding an access token from an OAuth client (client credentials)."""
        base = (base_url or os.environ.get(API_URL_ENV) or API_URL).rstrip("/")
        try:
            resp = httpx.post(f"{base}/api/v2/oauth/token", timeout=TIMEOUT,
                              data={"client_id": client_id, "client_secret": client_secret})
        except httpx.HTTPError as exc:
            raise PushError(_scrub(f"cannot reach {base} for an OAuth token: {exc}",
                                   [client_secret])) from None
        if resp.status_code != 200:
            raise PushError(f"OAuth token request refused: HTTP {resp.status_code} "
                            + _scrub(_message(resp), [client_secret]))
        token = resp.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise PushError("OAuth token response has no access_token")
        client = cls(token, base, tailnet)
        client._secrets.append(client_secret)
        return client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TailscaleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PushError(_scrub(f"cannot reach the Tailscale API at {self.base_url}: "
                                   f"{exc}", self._secrets)) from None

    def _fail(self, what: str, resp: httpx.Response) -> PushError:
        hint = {401: " (is the API key valid?)", 403: " (does the key have policy-file "
                "write access?)"}.get(resp.status_code, "")
        return PushError(_scrub(f"{what}: HTTP {resp.status_code}{hint}: {_message(resp)}",
                                self._secrets))

    def get_policy(self) -> LivePolicy:
        resp = self._send("GET", "/acl", headers={"Accept": HUJSON})
        if resp.status_code != 200:
            raise self._fail("cannot read the tailnet policy", resp)
        return LivePolicy(resp.text, resp.headers.get("ETag", ""))

    def validate(self, text: str) -> None:
        """Tailscale's own checks and the policy's tests; PushError with its message."""
        resp = self._send("POST", "/acl/validate", content=text.encode(),
                          headers={"Content-Type": HUJSON})
        if resp.status_code != 200:
            raise self._fail("Tailscale rejected the policy", resp)
        message = _message(resp)
        if message:
            raise PushError(_scrub(f"Tailscale rejected the policy: {message}",
                                   self._secrets))

    def set_policy(self, text: str, if_match: str) -> LivePolicy:
        resp = self._send("POST", "/acl", content=text.encode(),
                          headers={"Content-Type": HUJSON, "Accept": HUJSON,
                                   "If-Match": if_match})
        if resp.status_code == 412:
            raise Conflict("the tailnet policy changed while it was being pushed "
                           "(HTTP 412): run plan again and choose")
        if resp.status_code != 200:
            raise self._fail("cannot push the tailnet policy", resp)
        etag = resp.headers.get("ETag") or self.get_policy().etag
        return LivePolicy(text, etag)


def _message(resp: httpx.Response) -> str:
    """The API's `message` (and failed test details), or '' for an empty success."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500]
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message") or "")
    details = data.get("data")
    if message and isinstance(details, list) and details:
        message += ": " + "; ".join(json.dumps(d, sort_keys=True) for d in details[:5])
    return message


# -- what blumeops last saw --------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    etag: str
    text: str


def seen_path(state_dir: Path, tailnet: str) -> Path:
    return Path(state_dir) / "tailnet" / f"{tailnet}.json"


def read_seen(state_dir: Path, tailnet: str) -> Seen | None:
    try:
        data = json.loads(seen_path(state_dir, tailnet).read_text())
        return Seen(str(data["etag"]), str(data["text"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_seen(state_dir: Path, tailnet: str, seen: Seen) -> None:
    path = seen_path(state_dir, tailnet)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(seen), fh)
    tmp.replace(path)


# -- plan and apply -----------------------------------------------------------------------

Action = Literal["unchanged", "update", "conflict"]


@dataclass
class PolicyPlan:
    """What pushing would do. `diff` is live -> ours; `their_edit` is what changed in the
    live policy since blumeops last saw it (the admin console edit), when it did."""

    tailnet: str
    action: Action
    diff: str
    their_edit: str
    live_etag: str
    seen_etag: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "health": self.health()[0].value}

    def health(self) -> tuple[Health, str]:
        """The tailnet in the five words: in step, waiting for a push, or edited elsewhere."""
        if self.action == "unchanged":
            return Health.healthy, "the live policy matches the catalog"
        if self.action == "conflict":
            return Health.degraded, self.reason
        return Health.progressing, "the catalog's policy is not pushed yet"


def _udiff(a: str, b: str, a_name: str, b_name: str) -> str:
    return "".join(difflib.unified_diff(a.splitlines(keepends=True),
                                        b.splitlines(keepends=True), a_name, b_name))


def _same(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def plan_policy(desired: str, live: LivePolicy, seen: Seen | None,
                tailnet: str) -> PolicyPlan:
    """Pure: compare our rendered policy with the live one and what we last saw."""
    diff = _udiff(live.text, desired, "tailnet (live)", "catalog (rendered)")
    if seen is None:
        their = _udiff("", live.text, "(never seen)", "tailnet (live)")
        reason = ("blumeops has never pushed to this tailnet: the live policy would be "
                  "replaced; review it, then choose --overwrite or --take-theirs")
    elif seen.etag != live.etag and not _same(seen.text, live.text):
        their = _udiff(seen.text, live.text, "last pushed by blumeops", "tailnet (live)")
        reason = ("the live policy was edited since blumeops last pushed it (admin "
                  "console?): choose --overwrite or --take-theirs")
    else:
        their, reason = "", ""
    if _same(live.text, desired):
        return PolicyPlan(tailnet, "unchanged", "", their, live.etag,
                          seen.etag if seen else None, "the live policy matches the catalog")
    action: Action = "conflict" if reason else "update"
    return PolicyPlan(tailnet, action, diff, their, live.etag, seen.etag if seen else None,
                      reason or "the catalog's policy differs from the live one")


@dataclass
class PushResult:
    tailnet: str
    result: Literal["pushed", "unchanged", "dry-run", "refused", "took-theirs"]
    message: str
    plan: PolicyPlan

    def as_dict(self) -> dict[str, Any]:
        return {"tailnet": self.tailnet, "result": self.result, "message": self.message,
                "plan": self.plan.as_dict()}


def offline_tests_fail(lab: Any) -> list[str]:
    """The policy's own tests, run offline (tailnet.evaluate): one line per failure."""
    # lazy: keeps pydantic out of start-up
    from blumeops.tailnet.evaluate import run_tests
    from blumeops.tailnet.policy import derive_policy

    return [f"{v.src} -> {v.dst}: expected {'accept' if v.expected else 'deny'} ({v.reason})"
            for v in run_tests(derive_policy(lab)) if not v.passed]


def apply_policy(client: TailscaleClient, desired: str, state_dir: Path, tailnet: str,
                 *, enabled: bool, offline_failures: list[str], overwrite: bool = False,
                 take_theirs: bool = False) -> PushResult:
    """Push `desired` when it is safe and enabled; always say what happened and why."""
    if overwrite and take_theirs:
        raise PushError("choose one of --overwrite and --take-theirs")
    live = client.get_policy()
    seen = read_seen(state_dir, tailnet)
    plan = plan_policy(desired, live, seen, tailnet)
    if take_theirs:
        write_seen(state_dir, tailnet, Seen(live.etag, live.text))
        return PushResult(tailnet, "took-theirs", "the live policy is now the one blumeops "
                          "last saw; bring its edit into the catalog, or the next apply "
                          "pushes the catalog's policy over it", plan)
    if plan.action == "unchanged":
        write_seen(state_dir, tailnet, Seen(live.etag, live.text))
        return PushResult(tailnet, "unchanged", plan.reason, plan)
    if plan.action == "conflict" and not overwrite:
        return PushResult(tailnet, "refused", plan.reason, plan)
    if offline_failures:
        return PushResult(tailnet, "refused", "the policy's own tests fail offline: "
                          + "; ".join(offline_failures), plan)
    client.validate(desired)
    if not enabled:
        return PushResult(tailnet, "dry-run", "validated, not pushed: set `tailnet: "
                          "{push: true}` in the catalog to push", plan)
    # If-Match: the ETag of the policy this plan was made against (the one we remember,
    # or the one the user chose to overwrite): an edit landing after our GET gets a 412.
    pushed = client.set_policy(desired, live.etag)
    write_seen(state_dir, tailnet, Seen(pushed.etag, desired))
    return PushResult(tailnet, "pushed", f"pushed; ETag {pushed.etag}", plan)


# -- from a lab ---------------------------------------------------------------------------

def rendered_policy(lab: Any) -> tuple[str, str] | None:
    """(tailnet name, the policy text `render` writes), or None without a tailnet."""
    # lazy: keeps pydantic out of start-up
    from blumeops.render import render_lab

    for res in render_lab(lab, only=("tailscale",)):
        if res.kind == "policy":
            return res.target.partition("@")[2], res.body
    return None


def client_for(lab: Any, lab_dir: Path, base_url: str | None = None) -> TailscaleClient:
    """A client with the catalog's credentials (secret references resolved now)."""
    tailnet = lab.tailnet
    if tailnet is None:
        return client_from_refs(None, None, None, lab_dir, base_url)
    return client_from_refs(tailnet.api_key, tailnet.oauth_client_id,
                            tailnet.oauth_client_secret, lab_dir, base_url)


def client_from_refs(api_key: str | None, oauth_client_id: str | None,
                     oauth_client_secret: str | None, lab_dir: Path,
                     base_url: str | None = None) -> TailscaleClient:
    """A client from the catalog's secret references, resolved now; without any, the
    environment's TAILSCALE_API_KEY."""
    from blumeops.secrets.resolve import resolve  # lazy: keeps pyrage out of start-up

    if api_key is None and oauth_client_secret is None:
        if os.environ.get(KEY_ENV):  # a plan (or the live suite) without catalog credentials
            return TailscaleClient(os.environ[KEY_ENV], base_url)
        raise PushError("the catalog names no Tailscale credentials: set tailnet.api_key "
                        "(or oauth_client_id and oauth_client_secret) to a secret reference, "
                        f"or {KEY_ENV} in the environment")
    try:
        if api_key is not None:
            key = resolve([("tailnet.api_key", api_key)], lab_dir)["tailnet.api_key"]
            return TailscaleClient(key, base_url)
        assert oauth_client_secret is not None and oauth_client_id is not None
        secret = resolve([("tailnet.oauth_client_secret", oauth_client_secret)],
                         lab_dir)["tailnet.oauth_client_secret"]
    except SecretError as exc:
        raise PushError(str(exc)) from None
    return TailscaleClient.with_oauth(oauth_client_id, secret, base_url)
