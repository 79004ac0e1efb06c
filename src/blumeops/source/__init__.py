"""Where the lab comes from: a git branch, fetched by interval or woken by a forge webhook.

Standard library only (git runs as a subprocess), so importing it costs nothing.
"""

from blumeops.source.git import CommitInfo, GitSource, SourceError
from blumeops.source.webhooks import MAX_BODY, Forge, PushEvent, WebhookError, parse_push, verify

__all__ = [
    "MAX_BODY",
    "CommitInfo",
    "Forge",
    "GitSource",
    "PushEvent",
    "SourceError",
    "WebhookError",
    "parse_push",
    "verify",
]
