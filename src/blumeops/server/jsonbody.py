"""JSON request bodies, parsed with a nesting limit.

`json.loads` recurses once per level: a body of a few thousand `[` ends in a
RecursionError (a 500, and a stack at risk in a thread). The depth is measured first, on
the text with its strings removed, in C-speed passes (regex, translate, accumulate), so
even a 1 MiB body costs milliseconds.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from blumeops.server.responses import ApiError

_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(raw: bytes) -> int:
    """How deeply `raw` nests arrays and objects (0 for a scalar). For malformed JSON the
    answer is a bound json.loads would not exceed before failing."""
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return 0  # json.loads refuses it as well, before recursing
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(raw: bytes, max_depth: int) -> None:
    depth = json_depth(raw)
    if depth > max_depth:
        raise ApiError(400, f"body nests {depth} levels deep; at most {max_depth} are allowed")


def parse_object(raw: bytes, max_depth: int) -> dict[str, Any]:
    """A JSON object from a request body (an empty body is `{}`); 400 for anything else."""
    if not raw.strip():
        return {}
    check_depth(raw, max_depth)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data
