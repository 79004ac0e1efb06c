"""The one exception secrets code raises. Stdlib only (the exec wrapper imports it).

Messages say what went wrong and what to do, and never contain a secret value.
"""

from __future__ import annotations


class SecretError(Exception):
    """A secret could not be stored, found or resolved; the message is for a person."""
