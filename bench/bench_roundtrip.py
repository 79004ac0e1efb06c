"""What one observe round trip costs on a host, and the floor under it.

    .venv/bin/python bench/bench_roundtrip.py [--runs 30]

- agent CPU per round trip: the agent under python3.9 (`-I -S`, the wire's bootstrap, as
  on a host) answering one batch: observe (supervisor socket, one port) + supervisord's
  `getAllProcessInfo` + one HTTP probe, against a real supervisord and HTTP server here.
  CPU is the child's user + system time (getrusage), not wall time.
- the floor at 20 hosts: 20 parallel `ssh HOST true`, and 20 parallel
  `ssh HOST python3 -c pass`, on already open shared connections to 20 real sshd test
  hosts (tests/transports/sshhost.py, 127.0.1.x), each host's `python3` a python3.9.
Needs root, Debian openssh-server (`make tools`) and a pyenv python3.9.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # sshhost uses tests/requires.py
sys.path.insert(0, str(ROOT / "tests" / "transports"))
sys.path.insert(0, str(Path(__file__).parent))

from sshhost import PY39, SSHD, SshLab  # noqa: E402

from blumeops.transports.local import LocalTransport  # noqa: E402
from blumeops.transports.ssh import SshTransport  # noqa: E402
from common import Row  # noqa: E402

HOSTS = 20


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _supervisord(folder: Path) -> Iterator[Path]:
    """A real supervisord on a unix socket with one program; yields the socket."""
    sock = folder / "s.sock"
    conf = folder / "supervisord.conf"
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={folder}/sd.log\n"
        f"pidfile={folder}/sd.pid\n[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        "[program:sleeper]\ncommand=sleep 300\nstartsecs=0\n")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-n", "-c",
                             str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    here = LocalTransport("here")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"supervisord did not start: see {folder}/sd.log")
            with contextlib.suppress(Exception):
                got = here.call({"op": "xmlrpc", "socket": str(sock),
                                 "calls": [["supervisor.getProcessInfo", ["sleeper"]]]})
                if got["results"][0]["value"]["statename"] == "RUNNING":
                    break
            time.sleep(0.1)
        yield sock
    finally:
        with contextlib.suppress(Exception):
            here.call({"op": "xmlrpc", "socket": str(sock),
                       "calls": [["supervisor.shutdown", []]]})
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def agent_cpu(runs: int) -> list[float]:
    """CPU seconds of the python3.9 agent process, per observe round trip."""
    if PY39 is None:
        sys.exit("needs a pyenv python3.9")
    folder = Path(tempfile.mkdtemp(prefix="bo-rt-", dir="/tmp"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with _supervisord(folder) as sock:
            request = {"op": "batch", "ops": [
                {"op": "observe", "paths": [], "ports": [["127.0.0.1", port]],
                 "pidfiles": [], "supervisor_socket": str(sock)},
                {"op": "xmlrpc", "socket": str(sock),
                 "calls": [["supervisor.getAllProcessInfo", []]]},
                {"op": "probe", "kind": "http", "host": "127.0.0.1", "port": port,
                 "path": "/"}]}
            agent = LocalTransport("here", python=PY39)
            samples = []
            for i in range(runs + 1):  # the first warms the page cache: not counted
                before = _children_cpu()
                answer = agent.call(request)
                used = _children_cpu() - before
                results = answer["results"]
                assert results[1]["results"][0]["value"][0]["name"] == "sleeper", answer
                assert results[2]["ok"], answer
                if i:
                    samples.append(used)
            return samples
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(folder, ignore_errors=True)


def ssh_floor(runs: int) -> dict[str, list[float]]:
    """Wall seconds of HOSTS parallel `ssh HOST true` / `ssh HOST python3 -c pass`, on
    open shared connections."""
    if not Path(SSHD).exists() or PY39 is None:
        sys.exit("needs /usr/sbin/sshd (make tools) and a pyenv python3.9")
    lab = SshLab(Path(tempfile.mkdtemp(prefix="bo-bench-", dir="/tmp")))
    lab.setup()
    try:
        hosts = [lab.add_host(f"h{i:02d}") for i in range(HOSTS)]
        transports = [lab.transport(h.name) for h in hosts]
        for t in transports:  # open each host's shared connection (the master)
            t.facts()

        def parallel(*command: str) -> float:
            def one(t: SshTransport) -> None:
                argv = [t.ssh, *t.options(), "--", t.target.destination, *command]
                subprocess.run(argv, check=True, capture_output=True, timeout=60)
            start = time.perf_counter()
            with ThreadPoolExecutor(HOSTS) as pool:
                list(pool.map(one, transports))
            return time.perf_counter() - start

        parallel("true")  # warm-up
        return {"true": [parallel("true") for _ in range(runs)],
                "python": [parallel("python3", "-c", "pass") for _ in range(runs)]}
    finally:
        lab.close()
        shutil.rmtree(lab.dir, ignore_errors=True)


def rows(quick: bool) -> list[Row]:
    """For bench/run.py."""
    cpu_runs, ssh_runs = (10, 3) if quick else (30, 10)
    cpu = agent_cpu(cpu_runs)
    floor = ssh_floor(ssh_runs)
    return [
        Row("agent CPU per observe round trip (python3.9: observe + getAllProcessInfo + "
            "one HTTP probe)", cpu, note="user + system time of the agent process"),
        Row(f"{HOSTS} parallel `ssh HOST true`, open shared connections", floor["true"]),
        Row(f"{HOSTS} parallel `ssh HOST python3 -c pass` (python3.9), open shared "
            "connections", floor["python"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    cpu = agent_cpu(args.runs)
    print(f"agent CPU per observe round trip: median {statistics.median(cpu) * 1000:.1f} ms "
          f"({min(cpu) * 1000:.1f}-{max(cpu) * 1000:.1f}, {len(cpu)} runs)")
    floor = ssh_floor(max(3, args.runs // 3))
    for name, samples in floor.items():
        print(f"{HOSTS} parallel ssh HOST {name}: median {statistics.median(samples):.3f} s")


if __name__ == "__main__":
    main()
