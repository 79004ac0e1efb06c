"""The same no-op job on N = 1, 5 and 20 SSH hosts: blumeops, pyinfra and Ansible side by side.

    .venv/bin/python bench/bench_multihost.py [--runs 3] [--sizes 1,5,20]

Hosts are real sshd processes on 127.0.1.11-30 (tests/transports/sshhost.py, the test
fixture: host keys per run, a private ssh_config and known_hosts, python3.9 on each host's
PATH). Every host has the same job as the demo's no-op (bench_peers.py): 4 program files
present with the right content and 4 services answering on the host's address. Each tool
checks that job over SSH, all hosts in parallel (pyinfra --parallel N, ansible -f N), and
each run is asserted to have changed nothing.

"cold" is a run with no SSH connection open (each tool's multiplexed masters closed
first); "warm" runs come after it. pyinfra (paramiko) opens new connections every run;
Ansible and blumeops keep OpenSSH ControlMaster connections between runs.

The blumeops row: until the engine applies remote hosts, it is `blumeops_observe`, a
process that loads the lab, reaches each host through `transports.hosts.transport_for`
and checks the job in one observe round trip per host (file hashes + port checks), hosts
in parallel: the least the engine's no-op will cost. When `blumeops apply` reaches `ssh:`
hosts, switch `BLUMEOPS_ROW = blumeops_observe` below to `BLUMEOPS_ROW = blumeops_apply`.

Needs root, Debian openssh-server (`make tools`), a pyenv python3.9 and the peers' venv
(`make bench-peers`). Only loopback addresses; every sshd and ssh master is stopped after.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests" / "transports"))

from sshhost import PY39, SSHD, SshHost, SshLab, free_port  # noqa: E402

from common import BLUMEOPS, Row, run_ok, user_env  # noqa: E402

PEERS = BENCH / ".venv-peers"
SIZES = (1, 5, 20)
SERVICES = 4  # per host: 4 program files, 4 ports
PROGRAMS = "programs"  # under each host's HOME (observe mode: the bench writes them)
# apply mode: the program files blumeops's supervisor keeps on a host (confirm the layout)
APPLIED_PROGRAMS = "**/programs/*.conf"
# Each service: a listener that accepts and closes (tiny, so 80 of them fit the machine).
LISTENER = ("import socket,sys;s=socket.socket();s.setsockopt(1,2,1);"
            "s.bind((sys.argv[1],int(sys.argv[2])));s.listen(64);"
            "[s.accept()[0].close() for _ in iter(int,1)]")
SSH_CONFIG_ENV = "BLUMEOPS_SSH_CONFIG"  # for `blumeops apply`: the engine's ssh -F (to confirm)
TARGETS = {"pyinfra": 3.0, "ansible": 15.0}  # blumeops at N=20 at least this many times faster
PER_HOST_TARGET = 0.050  # s per added host
BUDGET = 60.0  # s of warm runs per tool and size: fewer runs (shown) beyond it


def command(port: int, address: str) -> list[str]:
    return ["python3", "-c", LISTENER, address, str(port)]


def program_text(service: str, port: int, address: str) -> bytes:
    """A program file as a service manager would hold it (its content is what is checked)."""
    return (f"[program:{service}]\ncommand={' '.join(command(port, address))}\n"
            "autostart=true\nautorestart=true\n").encode()


@dataclass
class HostJob:
    host: SshHost
    ports: list[int]

    def services(self) -> list[str]:
        return [f"{self.host.name}-s{i}" for i in range(SERVICES)]

    def files(self) -> list[tuple[Path, bytes]]:
        """(path on the host, content): the program files the job keeps present; in
        apply mode, the ones blumeops wrote there."""
        if observing():
            return [(self.host.root / PROGRAMS / f"{svc}.conf",
                     program_text(svc, port, self.host.address))
                    for svc, port in zip(self.services(), self.ports, strict=True)]
        found = sorted(self.host.root.glob(APPLIED_PROGRAMS))
        if len(found) != SERVICES:
            raise RuntimeError(f"{self.host.name}: expected {SERVICES} program files "
                               f"{APPLIED_PROGRAMS} under {self.host.root}, found {found}; "
                               "set APPLIED_PROGRAMS to where blumeops writes them")
        return [(p, p.read_bytes()) for p in found]


def lab_data(jobs: list[HostJob], ssh_identity: Path) -> dict[str, Any]:
    """The multi-host lab: each host reached over `ssh:`, its 4 services native there."""
    hosts: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for job in jobs:
        h = job.host
        hosts[h.name] = {"role": "compute", "os": "linux", "service_manager": "supervisor",
                         "address": h.address, "ssh": f"root@{h.address}:{h.port}",
                         "ssh_identity": str(ssh_identity)}
        for svc, port in zip(job.services(), job.ports, strict=True):
            services[svc] = {"native": h.name,
                             "command": command(port, h.address),
                             "ports": {"http": port}, "health": {"tcp": "http"}}
    return {"lab": "multihost-bench", "hosts": hosts, "services": services}


class Listeners:
    """The services answering: a listening socket per port, accepted and closed by one
    thread (a port check connects; a full backlog would make it hang)."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def add(self, address: str, port: int) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(64)
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ)
        self.socks.append(sock)

    def _loop(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                with contextlib.suppress(OSError):
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    conn.close()

    def __enter__(self) -> Listeners:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.socks:
            sock.close()
        self.sel.close()


@dataclass
class Bench:
    """The hosts, the job on disk, and the client files each tool reads."""

    lab: SshLab
    jobs: list[HostJob]
    work: Path
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state = self.work / "state"
        self.state.mkdir(parents=True, exist_ok=True)

    def lab_dir(self, n: int) -> Path:
        path = self.work / f"lab{n}"
        path.mkdir(exist_ok=True)
        (path / "lab.yaml").write_text(yaml.safe_dump(
            lab_data(self.jobs[:n], self.lab.client_key), sort_keys=False))
        return path

    def sources(self) -> Path:
        """A local copy of every host's program files: what pyinfra and Ansible put."""
        out = self.work / "sources"
        for job in self.jobs:
            for path, content in job.files():
                local = out / job.host.name / path.name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(content)
        return out


def mode(path: Path) -> str:
    """A file's permission bits as the peers spell them ("644"): the job keeps them too."""
    return f"{path.stat().st_mode & 0o777:o}"


def drop_connections(control_dir: Path) -> None:
    """Close every OpenSSH master whose socket is in `control_dir` (a cold start)."""
    if not control_dir.is_dir():
        return
    for sock in control_dir.iterdir():
        if sock.is_socket():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           capture_output=True, check=False, timeout=10)


# --- the tools: how each builds its command for N hosts, goes cold, and proves a no-op


@dataclass
class Tool:
    name: str
    label: str
    prepare: Callable[[Bench, int], list[str]]  # -> the command for N hosts
    env: Callable[[Bench], dict[str, str]]
    cold: Callable[[Bench], None]  # drop its connections
    check: Callable[[Bench, str, int], None]  # its output for N hosts was a no-op
    bring_up: Callable[[Bench, int], float | None] = lambda b, n: None  # before size N


def blumeops_observe(b: Bench, n: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "observe", str(b.lab_dir(n)),
            "--state", str(b.state), "--ssh-config", str(b.lab.ssh_config)]


def blumeops_apply(b: Bench, n: int) -> list[str]:
    return [*BLUMEOPS, "apply", str(b.lab_dir(n)), "--yes"]


BLUMEOPS_ROW = blumeops_observe  # -> blumeops_apply once the engine applies `ssh:` hosts


def observing() -> bool:
    return BLUMEOPS_ROW is blumeops_observe


def _blumeops_env(b: Bench) -> dict[str, str]:
    return user_env(BLUMEOPS_STATE_DIR=str(b.state), **{SSH_CONFIG_ENV: str(b.lab.ssh_config)})


def _blumeops_check(b: Bench, out: str, n: int) -> None:
    if observing():
        if out.strip() != f"no-op: {n} hosts, {n * SERVICES} files, {n * SERVICES} ports":
            raise RuntimeError(f"blumeops observe was not a clean no-op:\n{out[-1500:]}")
        return
    plan = run_ok([*BLUMEOPS, "plan", str(b.lab_dir(n))], _blumeops_env(b)).stdout
    verdict = re.search(r"^No changes: (\d+) resources", plan, re.MULTILINE)
    if verdict is None or verdict.group(1) == "0":  # 0: the engine reached no host
        raise RuntimeError(f"blumeops apply on {n} hosts left changes or reached no host:\n"
                           f"{plan[-1500:]}")


def _blumeops_bring_up(b: Bench, n: int) -> float | None:
    """Apply mode: the first apply at this size starts the services of the hosts new to
    it (sizes grow, so no host is ever removed). Returns its time."""
    if observing():
        return None
    start = time.perf_counter()
    run_ok(blumeops_apply(b, n), _blumeops_env(b))
    return time.perf_counter() - start


PYINFRA_DEPLOY = """from pyinfra import host
from pyinfra.operations import files, server

for i, (src, dest, mode) in enumerate(host.data.job_files):
    files.put(name=f"program file {i}", src=src, dest=dest, mode=mode)
for port in host.data.job_ports:
    server.wait(name=f"port {port} answers", port=port)
"""


def pyinfra_prepare(b: Bench, n: int) -> list[str]:
    src = b.sources()
    hosts = []
    for job in b.jobs[:n]:
        h = job.host
        hosts.append((h.name, {
            "ssh_hostname": h.address, "ssh_port": h.port, "ssh_user": "root",
            "ssh_key": str(b.lab.client_key), "ssh_known_hosts_file": str(b.lab.known_hosts),
            "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "job_files": [(str(src / h.name / p.name), str(p), mode(p)) for p, _ in job.files()],
            "job_ports": job.ports}))
    (b.work / f"pyinfra{n}.py").write_text(f"hosts = {hosts!r}\n")
    (b.work / "deploy.py").write_text(PYINFRA_DEPLOY)
    return [str(PEERS / "bin" / "pyinfra"), str(b.work / f"pyinfra{n}.py"),
            str(b.work / "deploy.py"), "-y", "--parallel", str(n)]


def pyinfra_check(b: Bench, out: str, n: int) -> None:
    """Every file op on every host unchanged, nothing failed (pyinfra counts each
    server.wait as a change: it always runs its check)."""
    total = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if out.count("] No changes") != n * SERVICES or total is None or total.group(3) != "-":
        raise RuntimeError(f"pyinfra was not a clean no-op on {n} hosts:\n{out[-1500:]}")


ANSIBLE_TASKS = """- hosts: all
  gather_facts: false
  tasks:
{copies}{waits}"""
COPY = """    - name: program file {i}
      ansible.builtin.copy:
        src: "{{{{ job_files[{i}][0] }}}}"
        dest: "{{{{ job_files[{i}][1] }}}}"
        mode: "{{{{ job_files[{i}][2] }}}}"
"""
WAIT = """    - name: port {i} answers
      ansible.builtin.wait_for:
        host: "{{{{ address }}}}"
        port: "{{{{ job_ports[{i}] }}}}"
        timeout: 5
"""


def ansible_prepare(b: Bench, n: int) -> list[str]:
    src = b.sources()
    inventory: dict[str, Any] = {"all": {"vars": {
        "ansible_ssh_common_args": f"-F {b.lab.ssh_config}"}, "hosts": {}}}
    for job in b.jobs[:n]:
        h = job.host
        inventory["all"]["hosts"][h.name] = {  # ssh_config's Host block: address, port
            "address": h.address,
            "job_files": [[str(src / h.name / p.name), str(p), "0" + mode(p)]
                          for p, _ in job.files()],
            "job_ports": job.ports}
    (b.work / f"inventory{n}.yml").write_text(yaml.safe_dump(inventory))
    playbook = ANSIBLE_TASKS.format(
        copies="".join(COPY.format(i=i) for i in range(SERVICES)),
        waits="".join(WAIT.format(i=i) for i in range(SERVICES)))
    (b.work / "noop.yml").write_text(playbook)
    return [str(PEERS / "bin" / "ansible-playbook"), "-i", str(b.work / f"inventory{n}.yml"),
            str(b.work / "noop.yml"), "-f", str(n), "-e", f"ansible_python_interpreter={PY39}"]


def _ansible_env(b: Bench) -> dict[str, str]:
    return {**os.environ, "PATH": f"{PEERS / 'bin'}:{os.environ['PATH']}",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(b.work / "ansible-cp"),
            "ANSIBLE_LOCAL_TEMP": str(b.work / "ansible-tmp"),
            "ANSIBLE_HOME": str(b.work / "ansible-home")}


def ansible_check(b: Bench, out: str, n: int) -> None:
    recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                       r"failed=(\d+)", out, re.MULTILINE)
    clean = [r for r in recap if r[1] == str(2 * SERVICES) and r[2:] == ("0", "0", "0")]
    if len(recap) != n or len(clean) != n:
        raise RuntimeError(f"ansible was not a clean no-op on {n} hosts:\n{out[-1500:]}")


TOOLS = [
    Tool("blumeops", "blumeops", lambda b, n: BLUMEOPS_ROW(b, n), _blumeops_env,
         lambda b: drop_connections(b.state / "ssh"), _blumeops_check, _blumeops_bring_up),
    Tool("pyinfra", "pyinfra 3.10 (--parallel N)", pyinfra_prepare,
         lambda b: {**os.environ, "PYINFRA_PROGRESS": "off"}, lambda b: None, pyinfra_check),
    Tool("ansible", "ansible-playbook -f N (pipelining)", ansible_prepare, _ansible_env,
         lambda b: drop_connections(b.work / "ansible-cp"), ansible_check),
]


def blumeops_label() -> str:
    if observing():
        return "blumeops: transport observe only, engine not yet remote"
    return "blumeops apply --yes"


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Bench]:
    """`count` sshd hosts. Observe mode: each holding its job (files written, ports
    answering); apply mode: `blumeops apply` brings the job up, `blumeops down` after."""
    work = Path(tempfile.mkdtemp(prefix="bo-mh-", dir="/tmp"))  # short: socket paths
    lab = SshLab(work / "ssh")
    lab.dir.mkdir()
    lab.setup()
    try:
        with Listeners() as listeners:
            jobs = []
            for i in range(count):
                host = lab.add_host(f"h{i:02d}")
                job = HostJob(host, [free_port(host.address) for _ in range(SERVICES)])
                jobs.append(job)
                if not observing():
                    continue
                for port in job.ports:
                    listeners.add(host.address, port)
                for path, content in job.files():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                    path.chmod(0o644)
            bench = Bench(lab, jobs, work)
            try:
                yield bench
            finally:
                if not observing():  # supervisord on each host outlives its ssh session
                    subprocess.run([*BLUMEOPS, "down", str(bench.lab_dir(count))],
                                   capture_output=True, check=False, env=_blumeops_env(bench))
                drop_connections(bench.state / "ssh")
                drop_connections(work / "ansible-cp")
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)


def measure(sizes: tuple[int, ...] = SIZES, runs: int = 3) -> dict[tuple[str, int, str],
                                                                      list[float]]:
    """{(tool, N, "cold"|"warm"): seconds}: per size, each tool once cold, then `runs`
    warm (fewer once they took BUDGET); apply mode: blumeops's bring-up at each size too,
    as "first apply"."""
    out: dict[tuple[str, int, str], list[float]] = {}
    with hosts(max(sizes)) as b:
        for n in sizes:
            for tool in TOOLS:
                first = tool.bring_up(b, n)
                if first is not None:
                    out[(tool.name, n, "first apply")] = [first]
                cmd = tool.prepare(b, n)
                env = tool.env(b)
                for kind, count in (("cold", 1), ("warm", runs)):
                    for _ in range(count):
                        if kind == "cold":
                            tool.cold(b)
                        start = time.perf_counter()
                        proc = run_ok(cmd, env, cwd=b.work)
                        out.setdefault((tool.name, n, kind), []).append(
                            time.perf_counter() - start)
                        tool.check(b, proc.stdout + proc.stderr, n)
                        if kind == "warm" and sum(out[(tool.name, n, kind)]) > BUDGET:
                            break  # Ansible at N=20: a few runs would take minutes
                print(f"  {tool.name} N={n}: cold {out[(tool.name, n, 'cold')][0]:.2f} s, "
                      f"warm {statistics.median(out[(tool.name, n, 'warm')]):.2f} s",
                      file=sys.stderr)
    return out


def slope(samples: dict[tuple[str, int, str], list[float]], tool: str, lo: int,
          hi: int) -> float:
    """Cost of each added host: the warm medians' slope between N = lo and N = hi."""
    return (statistics.median(samples[(tool, hi, "warm")])
            - statistics.median(samples[(tool, lo, "warm")])) / (hi - lo)


def to_rows(samples: dict[tuple[str, int, str], list[float]],
            sizes: tuple[int, ...]) -> list[Row]:
    labels = {t.name: t.label for t in TOOLS} | {"blumeops": blumeops_label()}
    rows = []
    for (tool, n, kind), times in samples.items():
        what = kind if kind == "first apply" else f"{kind} no-op"
        rows.append(Row(f"{what}, {n} SSH host{'s' * (n > 1)}: {labels[tool]}", times,
                        target="(peer)" if tool != "blumeops" else "",
                        note=f"{SERVICES} files + {SERVICES} port checks per host"))
    lo, hi = sorted(sizes)[-2:] if len(sizes) > 1 else (sizes[0], sizes[0])
    if hi > lo:
        for tool in labels:
            rows.append(Row(f"per added SSH host ({lo}->{hi}), warm: {labels[tool]}",
                            [slope(samples, tool, lo, hi)],
                            target=f"< {PER_HOST_TARGET * 1000:.0f} ms"
                            if tool == "blumeops" else "(peer)"))
    return rows


def summary(samples: dict[tuple[str, int, str], list[float]], sizes: tuple[int, ...]) -> str:
    """The tool x N table, the per-host slope and the targets at the largest N."""
    names = [t.name for t in TOOLS]
    sizes = tuple(sorted(sizes))
    lines = [f"blumeops row: {blumeops_label()}", "",
             "| tool | " + " | ".join(f"N={n} warm median (spread) | N={n} cold"
                                      for n in sizes) + " | per added host |",
             "|---|" + "---|---|" * len(sizes) + "---|"]
    for name in names:
        cells = []
        for n in sizes:
            warm = samples[(name, n, "warm")]
            cells.append(f"{statistics.median(warm):.3f} s ({min(warm):.3f}-{max(warm):.3f}, "
                         f"{len(warm)} runs)")
            cells.append(f"{samples[(name, n, 'cold')][0]:.3f} s")
        per = "-"
        if len(sizes) > 1:  # the asked slope (last two sizes), and over the whole range
            per = (f"{slope(samples, name, sizes[-2], sizes[-1]) * 1000:.0f} ms "
                   f"({sizes[0]}->{sizes[-1]}: "
                   f"{slope(samples, name, sizes[0], sizes[-1]) * 1000:.0f} ms)")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {per} |")
    top = max(sizes)
    ours = statistics.median(samples[("blumeops", top, "warm")])
    for peer, want in TARGETS.items():
        ratio = statistics.median(samples[(peer, top, "warm")]) / ours
        lines.append(f"N={top}: blumeops {ratio:.1f}x faster than {peer} (target >= {want:g}x)"
                     f" {'ok' if ratio >= want else 'MISSED'}")
    if len(sizes) > 1:
        per_host = slope(samples, "blumeops", sizes[-2], sizes[-1])
        lines.append(f"blumeops per added host ({sizes[-2]}->{sizes[-1]}): "
                     f"{per_host * 1000:.0f} ms (target < {PER_HOST_TARGET * 1000:.0f} ms) "
                     f"{'ok' if per_host < PER_HOST_TARGET else 'MISSED'}")
    return "\n".join(lines)


def available() -> str | None:
    """Why this benchmark cannot run here, or None."""
    if not Path(SSHD).exists() or PY39 is None or os.geteuid() != 0:
        return "needs root, /usr/sbin/sshd (make tools) and a pyenv python3.9"
    if not all((PEERS / "bin" / t).exists() for t in ("pyinfra", "ansible-playbook")):
        return f"needs the peers in {PEERS} (make bench-peers)"
    return None


def rows(quick: bool) -> list[Row]:
    """For bench/run.py --peers."""
    why = available()
    if why:
        print(f"bench_multihost skipped: {why}", file=sys.stderr)
        return []
    samples = measure(SIZES, runs=1 if quick else 3)
    print(summary(samples, SIZES), file=sys.stderr)
    return to_rows(samples, SIZES)


# --- `observe`: the blumeops row's process until the engine applies remote hosts


def observe(lab_dir: Path, state: Path, ssh_config: str) -> str:
    """Load the lab, then one observe per host, in parallel: every program file there
    with the expected content, every port answering. What a no-op apply checks at least."""
    from blumeops.catalog.loader import load_lab
    from blumeops.transports.hosts import transport_for
    from blumeops.transports.types import ObserveRequest, PortCheck

    result = load_lab(lab_dir)
    if result.lab is None:
        raise SystemExit("\n".join(str(d) for d in result.errors))
    lab = result.lab

    def one(name: str) -> tuple[int, int]:
        host = lab.hosts[name]
        address = host.address or name
        mine = {s: svc for s, svc in lab.services.items() if svc.native == name}
        want = {f"~/{PROGRAMS}/{s}.conf": hashlib.sha256(program_text(
            s, svc.ports["http"], address)).hexdigest() for s, svc in mine.items()}
        checks = [PortCheck(address, svc.ports["http"]) for svc in mine.values()]
        seen = transport_for(lab, name, state, ssh_config=ssh_config).observe(
            ObserveRequest(paths=list(want), ports=checks))
        stale = [p for p, digest in want.items() if seen.files[p].sha256 != digest]
        down = [c.port for c in checks if not seen.ports[c]]
        if stale or down:
            raise RuntimeError(f"{name}: would change {stale}, ports down {down}")
        return len(want), len(checks)

    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        counts = list(pool.map(one, lab.hosts))
    return (f"no-op: {len(counts)} hosts, {sum(c[0] for c in counts)} files, "
            f"{sum(c[1] for c in counts)} ports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    obs = sub.add_parser("observe", help="(internal) the blumeops row's process")
    obs.add_argument("lab", type=Path)
    obs.add_argument("--state", type=Path, required=True)
    obs.add_argument("--ssh-config", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
    if args.cmd == "observe":
        print(observe(args.lab, args.state, args.ssh_config))
        return
    why = available()
    if why:
        sys.exit(why)
    sizes = tuple(sorted(int(s) for s in args.sizes.split(",")))
    load = os.getloadavg()[0]
    samples = measure(sizes, args.runs)
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print(summary(samples, sizes))
    if args.json:
        args.json.write_text(json.dumps([{"tool": t, "hosts": n, "kind": k, "samples": s}
                                         for (t, n, k), s in samples.items()], indent=2))


if __name__ == "__main__":
    main()
