"""The bytes a round trip is made of: a fixed bootstrap, then agent, request and blobs.

The remote command is always `REMOTE_COMMAND`, a constant: no catalog value is ever part
of a command line, so no remote shell can see one. The bootstrap reads the compressed
agent from stdin and execs it on python3 >= 3.9; an older python3 answers with its
version and uname instead, so `facts.check` can say what is wrong with the host.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from blumeops.transports.agent import MARKER as MARKER
from blumeops.transports.exceptions import PythonUnsupported, RemoteError
from blumeops.transports.types import JSON, HostFacts

# One line of Python for `python3 -c`. Only the single quotes around it are shell syntax,
# and it holds none itself, so every POSIX shell, zsh and fish pass it through unchanged.
BOOTSTRAP = (
    "import sys,os,json,zlib;b=sys.stdin.buffer;a=b.read(int(b.readline()));"
    "u=os.uname();exec(zlib.decompress(a)) if sys.version_info>=(3,9) else "
    "sys.stdout.write(json.dumps(dict(ok=False,error='python-too-old',python='%d.%d.%d'"
    "%sys.version_info[:3],system=u.sysname,machine=u.machine)))"
).replace("'", '"')
# -I: the host's PYTHONPATH and friends cannot change what runs; -S: no site-packages
# (the agent is stdlib only), a few milliseconds less per round trip.
PYTHON_FLAGS = ("-I", "-S")
REMOTE_COMMAND = f"python3 {' '.join(PYTHON_FLAGS)} -c '{BOOTSTRAP}'"
assert "'" not in BOOTSTRAP and "\\" not in BOOTSTRAP

# Exit status of a shell that could not find python3.
COMMAND_NOT_FOUND = 127
PROTOCOL_VERSION = 1


@cache
def agent_program() -> bytes:
    """The agent's source, compressed once per process (about 5 KB on the wire)."""
    return zlib.compress((Path(__file__).with_name("agent.py")).read_bytes(), 9)


def request_line(request: JSON) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, **request}, separators=(",", ":")).encode() + b"\n"


def encode(request: JSON, blobs: Sequence[bytes] = ()) -> bytes:
    """Everything the remote python3 reads on stdin, in order."""
    program = agent_program()
    return b"".join([b"%d\n" % len(program), program, request_line(request), *blobs])


def decode(host: str, stdout: bytes, stderr: bytes) -> JSON:
    """The agent's result, or the typed error it (or the host's python3) reported."""
    _, _, body = stdout.rpartition(MARKER)  # all of stdout when there is no marker
    try:
        reply = json.loads(body.decode("utf-8"))
    except RecursionError:  # nested deeper than json can parse: not an agent's answer
        raise RemoteError(host, "bad-answer", f"host {host}: its agent's answer is unusable:"
                          " nested too deep") from None
    except ValueError:
        last = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RemoteError(host, "no-answer", f"host {host}: the agent gave no answer"
                          + (f" ({' / '.join(last)})" if last else "")) from None
    if not isinstance(reply, dict):
        raise RemoteError(host, "no-answer", f"host {host}: the agent's answer is not an object")
    return unwrap(host, reply)


def unwrap(host: str, reply: JSON) -> JSON:
    """The result inside an agent's reply, or its error raised as a typed exception."""
    if reply.get("ok") is True:
        result = reply.get("result")
        return result if isinstance(result, dict) else {"value": result}
    if reply.get("error") == "python-too-old":
        version = _text(reply.get("python"))[:40]
        facts = HostFacts(system=_text(reply.get("system")),
                          machine=_text(reply.get("machine")), python=version)
        raise PythonUnsupported(host, f"host {host}: python3 is {version}; blumeops needs "
                                "python3 >= 3.9 on the host", facts)
    code, message = reply.get("error"), reply.get("message")
    raise RemoteError(host, code[:100] if isinstance(code, str) else "error",
                      f"host {host}: " + (message[:2000] if isinstance(message, str)
                                          else "the request failed"))


def _text(value: object) -> str:
    """A string field of a reply, or "" (never str() of a hostile structure)."""
    return value if isinstance(value, str) else ""


def python_missing(host: str) -> PythonUnsupported:
    return PythonUnsupported(
        host, f"host {host}: no python3 on the SSH user's PATH; blumeops needs python3 >= 3.9"
        " there (macOS: xcode-select --install; Debian: apt install python3)",
        HostFacts(system="", machine="", python=None))
