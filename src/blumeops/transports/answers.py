"""Every answer from a host is checked here before anything uses it: shape, size, depth.

A host is not trusted to answer well: its agent may be broken, replaced, or flooding.
`check` compares a result with the shape its request's op promises (agent.py's
docstring) and raises `BadAnswer` (a RemoteError: the engine makes it that host's error,
its services Unknown, and goes on with the others). `MAX_ANSWER` bounds the bytes read
from one round trip and `MAX_DEPTH` the nesting of values no shape describes.

`budget` is the other half of not trusting a host: how long one round trip may take,
from what the request asks (its commands' and probes' own timeouts, the bytes it sends).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import JSON

MAX_ANSWER = 32 << 20  # bytes of stdout from one round trip (file contents never return)
MAX_DEPTH = 16  # nesting of values with no declared shape (XML-RPC values, job records)
BASE_SECONDS = 10.0  # what any round trip may take beyond its ops' own timeouts
UPLOAD_RATE = 512 << 10  # bytes per second assumed for the files a request carries


class BadAnswer(RemoteError):
    """The host answered something blumeops cannot use; `message` says where and why."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(host, "bad-answer", f"host {host}: its agent's answer is unusable:"
                                             f" {message}")


class _Bad(Exception):
    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where or 'the result'} {what}")


Check = Callable[[Any, str], None]


def _type(*types: type) -> Check:
    names = " or ".join(t.__name__ for t in types)

    def check(value: Any, where: str) -> None:
        # bool is an int to Python, never to a shape here.
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise _Bad(where, f"is {type(value).__name__}, expected {names}")
    return check


STR, INT, BOOL = _type(str), _type(int), _type(bool)


def opt(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if value is not None:
            inner(value, where)
    return check


def obj(required: Mapping[str, Check], optional: Mapping[str, Check] | None = None) -> Check:
    """An object with these keys (others are ignored: a newer agent may add some)."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(where, f"is {type(value).__name__}, expected an object")
        for key, inner in required.items():
            if key not in value:
                raise _Bad(where, f"has no {key!r}")
            inner(value[key], f"{where}.{key}" if where else key)
        for key, inner in (optional or {}).items():
            if key in value:
                inner(value[key], f"{where}.{key}" if where else key)
    return check


def dict_of(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise _Bad(where, f"is {type(value).__name__}, expected an object")
        for key, item in value.items():
            inner(item, f"{where}[{key[:80]!r}]")
    return check


def list_of(inner: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise _Bad(where, f"is {type(value).__name__}, expected a list")
        for i, item in enumerate(value):
            inner(item, f"{where}[{i}]")
    return check


def row(*items: Check) -> Check:
    """A list of exactly these items, in order."""
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list) or len(value) != len(items):
            raise _Bad(where, f"is not a list of {len(items)}")
        for i, (inner, item) in enumerate(zip(items, value, strict=True)):
            inner(item, f"{where}[{i}]")
    return check


def either(*shapes: Check) -> Check:
    def check(value: Any, where: str) -> None:
        first: _Bad | None = None
        for shape in shapes:
            try:
                shape(value, where)
                return
            except _Bad as exc:
                first = first or exc
        assert first is not None
        raise first
    return check


def bounded(value: Any, where: str) -> None:
    """Any JSON value nested at most MAX_DEPTH deep (no recursion: a hostile depth
    cannot exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Bad(where, f"is nested deeper than {MAX_DEPTH}")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]


def record(value: Any, where: str) -> None:
    """An object with no declared shape (a job's run record), bounded."""
    obj({})(value, where)
    bounded(value, where)


STATE = obj({"exists": BOOL, "kind": STR},
            {"sha256": opt(STR), "mode": opt(INT), "size": opt(INT), "owner": opt(STR)})
FACTS = obj({"system": STR, "machine": STR},
            {"python": opt(STR), "hostname": STR, "release": STR, "user": STR, "home": STR,
             "uid": opt(INT), "synology": BOOL,
             "managers": dict_of(obj({"running": BOOL}, {"path": opt(STR)}))})
DOWN = obj({"down": STR})
PROCESS = obj({"group": STR, "statename": STR},
              {"name": STR, "pid": INT, "spawnerr": STR, "description": STR})
# The XML-RPC methods whose values blumeops reads; any other value is only bounded.
RPC_VALUES: dict[str, Check] = {
    "supervisor.getAllProcessInfo": list_of(PROCESS),
    "supervisor.reloadConfig": row(row(list_of(STR), list_of(STR), list_of(STR))),
}
SHAPES: dict[str, Check] = {
    "observe": obj({"facts": FACTS, "files": dict_of(STATE),
                    "ports": list_of(row(STR, INT, BOOL)), "pidfiles": dict_of(opt(INT))}),
    "put": obj({"written": list_of(STR), "removed": list_of(STR)},
               {"swept": list_of(STR), "pruned": list_of(STR)}),
    "run": obj({"returncode": INT, "stdout": STR, "stderr": STR}),
    "list": obj({"files": dict_of(STR)}),
    "read": obj({"contents": dict_of(opt(STR))}),
    "http": either(DOWN, obj({"status": INT, "body": STR})),
    "probe": obj({"ok": BOOL}, {"detail": STR}),
    "index": obj({"entries": dict_of(STR), "files": dict_of(STATE)},
                 {"damaged": BOOL, "outside": dict_of(STR)}),
    "tail": obj({"tails": dict_of(opt(STR))}),
    "jobs": obj({"jobs": dict_of(record)}),
    "spawn": obj({"pid": INT}),
}
# What a read-only op of a batch answers in its own place when it failed there.
READ_ONLY = frozenset({"observe", "list", "read", "xmlrpc", "probe", "spawn", "tail",
                       "index", "jobs"})
ERROR = obj({"error": STR, "message": STR})


def _xmlrpc(request: JSON) -> Check:
    calls = request.get("calls") or []
    methods = [str(c[0]) if isinstance(c, list) and c else "" for c in calls]

    def check(value: Any, where: str) -> None:
        if isinstance(value, dict) and "down" in value:
            DOWN(value, where)
            return
        list_of(either(obj({"value": bounded}), obj({"fault": STR})))(
            value.get("results") if isinstance(value, dict) else value, f"{where}.results")
        results = value["results"]
        if len(results) > len(methods):
            raise _Bad(f"{where}.results", f"has {len(results)} answers to {len(methods)} "
                                           "calls")
        for i, (method, result) in enumerate(zip(methods, results, strict=False)):
            if "value" in result and method in RPC_VALUES:
                RPC_VALUES[method](result["value"], f"{where}.results[{i}].value")
    return check


def _shape(request: JSON, sub: bool) -> Check:
    op = request.get("op")
    if op == "batch":
        ops = request.get("ops") or []

        def batch(value: Any, where: str) -> None:
            list_of(obj({}))(value.get("results") if isinstance(value, dict) else value,
                             f"{where}.results")
            results = value["results"]
            if len(results) != len(ops):
                raise _Bad(f"{where}.results", f"has {len(results)} answers to "
                                               f"{len(ops)} requests")
            for i, (op_request, result) in enumerate(zip(ops, results, strict=True)):
                _shape(op_request, True)(result, f"{where}.results[{i}]")
        return batch
    shape = _xmlrpc(request) if op == "xmlrpc" else SHAPES.get(str(op), bounded)
    if sub and op in READ_ONLY:
        return either(ERROR, shape) if op != "xmlrpc" else _or_error(shape)
    return shape


def _or_error(shape: Check) -> Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, dict) and "error" in value and "results" not in value:
            ERROR(value, where)
        else:
            shape(value, where)
    return check


def check(host: str, request: JSON, result: Any) -> JSON:
    """`result` if it has the shape `request`'s op promises; else BadAnswer."""
    try:
        _shape(request, False)(result, "")
    except _Bad as exc:
        raise BadAnswer(host, f"the {request.get('op')} result: {exc}") from None
    assert isinstance(result, dict)
    return result


def budget(request: JSON, blobs: Sequence[bytes] = ()) -> float:
    """Seconds one round trip may take: a base, the timeouts its ops declare (a run's,
    a probe's, a socket's), and the upload of its files."""
    return BASE_SECONDS + _op_seconds(request) + sum(len(b) for b in blobs) / UPLOAD_RATE


def _op_seconds(request: JSON) -> float:
    op = request.get("op")
    if op == "batch":
        return sum(_op_seconds(sub) for sub in request.get("ops") or [])
    declared = float(request.get("timeout") or 0)
    if op == "run":
        return declared or 60.0
    if op in ("http", "xmlrpc"):  # each call may wait its socket timeout
        calls = len(request.get("calls") or [None])
        return (declared or 30.0) * calls
    if op in ("observe", "probe"):
        return (declared or 2.0) + 1.0  # observe: ports in parallel, the supervisor socket
    return 0.0
