"""One rule for every generated format: catalog values that cannot be written safely.

Catalog strings land in supervisord programs (INI), systemd units, launchd plists, the
Caddyfile and command lines. Each renderer escapes what its format can escape; what no
format can hold safely is refused here, at `validate`, with file:line:

- control characters anywhere (a newline would start a new INI section, unit directive
  or Caddyfile block); only file contents and descriptions may hold tabs and newlines;
- environment and secret names that are not plain names (`A=B`, `A,B`);
- domain suffixes, the tailnet name and host addresses that are not DNS names (they
  become Caddyfile site addresses), TLS emails and providers that are not plain tokens;
- a program name systemd would read as a prefix (`-`, `@`, `+`, ...), one holding `=`
  (read by `env` as an assignment), or an empty one.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from typing import Any

from blumeops.catalog.diagnostics import Diagnostic, Marks, Path_
from blumeops.catalog.model import Lab

# C0 and C1 controls, DEL, line/paragraph separators, lone surrogates, U+FFFE/U+FFFF.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")
_ALLOWED = {"file": "\t\n\r", "description": "\t\n"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
EMAIL = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SYSTEMD_PREFIXES = "-@:+!|"


def printable(text: str) -> str:
    """`text` with every control character written as an escape (for messages)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace")
                        .decode("ascii"), text)


def _context(path: Path_) -> str:
    """Which characters a value at `path` may hold beyond printable text."""
    if len(path) == 4 and path[0] == "services" and path[2] == "files":
        return "file"
    if path[-1:] == ("description",) and path[:1] == ("services",):
        return "description"
    return ""


# In JSON text: a control character written raw, or escaped (maybe a false alarm such as
# an escaped backslash before 'n'; then the exact walk below decides).
_IN_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]|\\[bfnrt]|\\u00[01]")


def _maybe_control(data: Any) -> bool:
    """A fast, never falsely negative check over the whole catalog (C-speed json)."""
    try:
        text = json.dumps(data, ensure_ascii=False, check_circular=False)
    except (TypeError, ValueError):  # a YAML timestamp or binary: walk it
        return True
    return _IN_JSON.search(text) is not None


def control_characters(data: Any, marks: Marks) -> list[Diagnostic]:
    """Every key and string value of the raw catalog holding a control character."""
    out: list[Diagnostic] = []
    if not _maybe_control(data):
        return out

    def bad(text: str, path: Path_) -> str | None:
        allowed = _ALLOWED.get(_context(path), "")
        for match in _CONTROL.finditer(text):
            if match.group() not in allowed:
                return f"U+{ord(match.group()):04X}"
        return None

    def walk(value: Any, path: Path_) -> None:
        if isinstance(value, str):
            char = bad(value, path)
            if char:
                where = ".".join(str(p) for p in path) or "top level"
                out.append(marks.diag(path, "control-character",
                                      f"{where}: control character {char} in a value; it "
                                      "would be written raw into generated configs"))
        elif isinstance(value, dict):
            for key, item in value.items():
                kpath = (*path, key)
                if isinstance(key, str) and bad(key, ()):
                    out.append(marks.diag(kpath, "control-character",
                                          f"key {printable(repr(key))} holds a control "
                                          "character"))
                walk(item, kpath)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, (*path, i))

    walk(data, ())
    return out


def is_address(text: str) -> bool:
    """An IP address or a DNS name (case-insensitive)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(DNS_NAME.match(text.lower()))


def format_problems(lab: Lab, marks: Marks) -> Iterator[Diagnostic]:
    """Values with no safe spelling in the formats they are rendered into."""
    for name, domain in lab.domains.items():
        if not DNS_NAME.match(domain.suffix):
            yield marks.diag(("domains", name, "suffix"), "dns-name",
                             f"domain suffix {domain.suffix!r} is not a DNS name (lowercase "
                             "labels of letters, digits and '-', joined by dots)")
        tls = domain.tls
        if tls.email is not None and not EMAIL.match(tls.email):
            yield marks.diag(("domains", name, "tls", "email"), "tls",
                             f"tls email {tls.email!r} is not a plain address (name@domain)")
        if tls.provider is not None and not PROVIDER.match(tls.provider):
            yield marks.diag(("domains", name, "tls", "provider"), "tls",
                             f"tls provider {tls.provider!r} is not a module name "
                             "(lowercase letters, digits, '-' and '_')")
    if lab.tailnet is not None and not DNS_NAME.match(lab.tailnet.name):
        yield marks.diag(("tailnet", "name"), "dns-name",
                         f"tailnet name {lab.tailnet.name!r} is not a DNS name")
    for name, host in lab.hosts.items():
        if host.address is not None and not is_address(host.address):
            yield marks.diag(("hosts", name, "address"), "dns-name",
                             f"host address {host.address!r} is neither an IP address nor "
                             "a DNS name")
    for name, svc in lab.services.items():
        at = ("services", name)
        for section, keys in (("environment", svc.environment), ("secrets", svc.secrets)):
            for key in keys:
                if not ENV_NAME.match(key):
                    yield marks.diag((*at, section, key), "env-name",
                                     f"{section} name {key!r} is not a valid variable name "
                                     "(letters, digits and '_', not starting with a digit)")
        if svc.command:
            program = svc.command[0]
            if not program:
                yield marks.diag((*at, "command", 0), "command",
                                 "the program (first word of 'command') is empty")
            elif "=" in program:
                yield marks.diag((*at, "command", 0), "command",
                                 f"program {program!r} holds '=', which `env` would read as "
                                 "a variable assignment")
            elif program[0] in SYSTEMD_PREFIXES:
                yield marks.diag((*at, "command", 0), "command",
                                 f"program {program!r} starts with {program[0]!r}, which "
                                 "service managers read as a flag; write its path "
                                 f"(./{program})")
