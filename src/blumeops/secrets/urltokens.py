"""Credentials that URLs carry outside their userinfo: Apprise's token-in-path schemes
(discord://ID/TOKEN, slack://A/B/C, tgram://BOT_TOKEN/CHAT, ...), the web hook URLs of
those services, and query parameters such as ?token=. Found to refuse them in a catalog
(they belong in the vault), masked wherever a URL is shown.
"""

from __future__ import annotations

import re

MASK = "[redacted]"

# Apprise schemes whose host and path are the credential.
PATH_TOKEN_SCHEMES = frozenset({
    "discord", "slack", "tgram", "telegram", "msteams", "pover", "gotify", "gotifys",
    "mmost", "mmosts", "pbul", "ifttt", "zulip", "join", "line", "pushed", "spush"})
# https:// web hook URLs whose path is the credential: host -> path prefix.
WEBHOOK_PATHS = {
    "discord.com": "/api/webhooks/", "discordapp.com": "/api/webhooks/",
    "hooks.slack.com": "/", "api.telegram.org": "/", "outlook.office.com": "/webhook",
}
# Query parameters that hold a credential (?token=, ?apikey=, ?webhook_secret=, ...).
_SECRET_PARAM = re.compile(
    r"(?:^|[_-])(?:token|key|apikey|secret|pass|passwd|password|pw|auth|webhook|sig)s?$",
    re.IGNORECASE)
# A URL in running text: stops at blanks, quotes and brackets.
_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>[^\s'\"<>`()\[\]{}]+)")


def _split(rest: str) -> tuple[str, str, str]:
    """(host, path, query) of what follows `scheme://` (a fragment counts as query)."""
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    where, query = rest[:cut], rest[cut:]
    host, slash, path = where.partition("/")
    return host.rpartition("@")[2].lower(), slash + path, query


def _webhook_prefix(scheme: str, host: str, path: str) -> str | None:
    prefix = WEBHOOK_PATHS.get(host.split(":")[0])
    if scheme.lower() in ("http", "https") and prefix and path.startswith(prefix) \
            and len(path) > len(prefix):
        return prefix
    return None


def _secret_params(query: str) -> list[str]:
    names = (part.partition("=")[0] for part in re.split(r"[?&#;]", query) if "=" in part)
    return [n for n in names if _SECRET_PARAM.search(n)]


def token_problem(url: str) -> str | None:
    """Why `url` carries a credential outside its userinfo, or None."""
    m = _URL.fullmatch(url.strip())
    if m is None:
        return None
    scheme = m["scheme"].lower()
    host, path, query = _split(m["rest"])
    if scheme in PATH_TOKEN_SCHEMES and (host or path.strip("/")):
        return f"a {scheme}:// URL carries its token in the URL itself"
    if _webhook_prefix(scheme, host, path):
        return f"a web hook URL of {host} carries its token in the path"
    params = _secret_params(query)
    if params:
        return f"this URL carries a credential in its query ({', '.join(params)}=)"
    return None


def _mask(m: re.Match[str]) -> str:
    scheme, rest = m["scheme"], m["rest"]
    host, path, query = _split(rest)
    if scheme.lower() in PATH_TOKEN_SCHEMES:
        return f"{scheme}://{MASK}"
    prefix = _webhook_prefix(scheme, host, path)
    if prefix is not None:
        return f"{scheme}://{rest.split('/', 1)[0]}{prefix}{MASK}"
    if not _secret_params(query):
        return m.group(0)
    return f"{scheme}://" + re.sub(
        r"([?&#;])([^=&#;]+)=([^&#;]*)",
        lambda p: f"{p[1]}{p[2]}={MASK if _SECRET_PARAM.search(p[2]) else p[3]}", rest)


def mask_url_tokens(text: str) -> str:
    """`text` with the credentials of every URL in it masked (path tokens, hook paths and
    secret query parameters); other URLs unchanged."""
    if "://" not in text:
        return text
    return _URL.sub(_mask, text)
