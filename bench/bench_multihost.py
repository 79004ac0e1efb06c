"""The same no-op job on N = 1, 5 and 20 SSH hosts: blumeops, pyinfra and Ansible side by side.

    .venv/bin/python bench/bench_multihost.py [--runs 3] [--sizes 1,5,20]

Hosts are real sshd processes on 127.0.1.11-30 (tests/transports/sshhost.py, the test
fixture: host keys per run, a private ssh_config and known_hosts, python3.9 on each host's
PATH and this venv's supervisord linked into its bin dir). The lab is N such hosts, each
with 4 supervised services (tiny listeners bound to the host's address) and nothing else.
`blumeops apply --yes` brings it up (blumeops's own supervisord on each host, the program
files under ~/.local/state/blumeops/LAB/supervisor/programs/); then each tool checks the
same job over SSH, all hosts in parallel (blumeops's engine, pyinfra --parallel N,
ansible -f N): those 4 program files present with the content blumeops wrote, and those 4
ports answering. Each run is asserted to have changed nothing (blumeops: apply printed
"No changes", and the plan after it too).

"cold" is a run with no SSH connection open (each tool's multiplexed masters closed
first); "warm" runs come after it. pyinfra (paramiko) opens new connections every run;
Ansible and blumeops keep OpenSSH ControlMaster connections between runs.

Sizes grow (1, 5, 20): before each size, a first `blumeops apply` starts the services
of the hosts new to it (reported as "first apply"). `blumeops down` and a reap of every
process under the bench's directory end it.

Needs root, Debian openssh-server (`make tools`), a pyenv python3.9 and the peers' venv
(`make bench-peers`). Only loopback addresses; every sshd and ssh master is stopped after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))  # sshhost uses tests/requires.py
sys.path.insert(0, str(BENCH.parent / "tests" / "transports"))
sys.path.insert(0, str(BENCH.parent / "tests" / "engine"))

from demolab import reap  # noqa: E402
from sshhost import PY39, SSHD, SshHost, SshLab, free_port  # noqa: E402

from common import BLUMEOPS, Row, run_ok, user_env  # noqa: E402

PEERS = BENCH / ".venv-peers"
SIZES = (1, 5, 20)
SERVICES = 4  # per host: 4 program files, 4 ports
LAB = "multihost-bench"
# Where blumeops's supervisor keeps a host's program files (under the host's HOME).
PROGRAMS = f".local/state/blumeops/{LAB}/supervisor/programs"
# Each service: a listener that accepts and closes (tiny, so 80 of them fit the machine).
LISTENER = ("import socket,sys;s=socket.socket();s.setsockopt(1,2,1);"
            "s.bind((sys.argv[1],int(sys.argv[2])));s.listen(64);"
            "[s.accept()[0].close() for _ in iter(int,1)]")
SSH_CONFIG_ENV = "BLUMEOPS_SSH_CONFIG"  # the engine's ssh -F
TARGETS = {"pyinfra": 3.0, "ansible": 15.0}  # blumeops at N=20 at least this many times faster
PER_HOST_TARGET = 0.050  # s per added host
BUDGET = 60.0  # s of warm runs per tool and size: fewer runs (shown) beyond it


def command(port: int, address: str) -> list[str]:
    return ["python3", "-c", LISTENER, address, str(port)]


@dataclass
class HostJob:
    host: SshHost
    ports: list[int]

    def services(self) -> list[str]:
        return [f"{self.host.name}-s{i}" for i in range(SERVICES)]

    def files(self) -> list[tuple[Path, bytes]]:
        """(path on the host, content): the program files blumeops wrote there, which
        the peers keep present too."""
        want = [self.host.root / PROGRAMS / f"{svc}.conf" for svc in self.services()]
        missing = [str(p) for p in want if not p.is_file()]
        if missing:
            raise RuntimeError(f"{self.host.name}: blumeops wrote no {missing}")
        return [(p, p.read_bytes()) for p in want]


def lab_data(jobs: list[HostJob]) -> dict[str, Any]:
    """The multi-host lab: each host reached over `ssh:` (a Host block of the lab's
    ssh_config), its 4 services native there under blumeops's supervisord."""
    hosts: dict[str, Any] = {}
    services: dict[str, Any] = {}
    for job in jobs:
        h = job.host
        hosts[h.name] = {"role": "compute", "os": "linux", "service_manager": "supervisor",
                         "address": h.address, "ssh": h.name}
        for svc, port in zip(job.services(), job.ports, strict=True):
            services[svc] = {"native": h.name,
                             "command": command(port, h.address),
                             "ports": {"http": port}, "health": {"tcp": "http"}}
    return {"lab": LAB, "hosts": hosts, "services": services}


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
            lab_data(self.jobs[:n]), sort_keys=False))
        return path

    def sources(self, n: int) -> Path:
        """A local copy of the first n hosts' program files: what pyinfra and Ansible put."""
        out = self.work / "sources"
        for job in self.jobs[:n]:
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


def blumeops_apply(b: Bench, n: int) -> list[str]:
    return [*BLUMEOPS, "apply", str(b.lab_dir(n)), "--yes"]


BLUMEOPS_ROW = blumeops_apply


def _blumeops_env(b: Bench) -> dict[str, str]:
    return user_env(BLUMEOPS_STATE_DIR=str(b.state), **{SSH_CONFIG_ENV: str(b.lab.ssh_config)})


def _no_changes(out: str) -> int:
    """The resources a plan found matching, or 0 when it had changes to make."""
    verdict = re.search(r"^No changes: (\d+) resources", out, re.MULTILINE)
    return int(verdict.group(1)) if verdict else 0


def _blumeops_check(b: Bench, out: str, n: int) -> None:
    """The apply itself planned nothing, and the plan after it agrees: every one of the
    N x 4 programs (and N supervisords) matched, none changed."""
    plan = run_ok([*BLUMEOPS, "plan", str(b.lab_dir(n))], _blumeops_env(b)).stdout
    seen = (_no_changes(out), _no_changes(plan))
    if min(seen) < n * SERVICES:  # fewer: a host was not reached
        raise RuntimeError(f"blumeops apply on {n} hosts was not a no-op {seen}:\n"
                           f"{out[-1500:]}\n{plan[-1500:]}")


def _blumeops_bring_up(b: Bench, n: int) -> float | None:
    """The first apply at this size starts the services of the hosts new to it (sizes
    grow, so no host is ever removed). Returns its time."""
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
    src = b.sources(n)
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
    src = b.sources(n)
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
    return "blumeops apply --yes"


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Bench]:
    """`count` sshd hosts with supervisord on their PATH and nothing running yet; after,
    `blumeops down`, every ssh master closed, every sshd stopped, and any process left
    under the bench's directory (a host's supervisord or service) killed."""
    work = Path(tempfile.mkdtemp(prefix="bo-mh-", dir="/tmp"))  # short: socket paths
    lab = SshLab(work / "ssh")
    lab.dir.mkdir()
    lab.setup()
    try:
        jobs = []
        for i in range(count):
            host = lab.add_host(f"h{i:02d}", tools=("supervisord",))
            jobs.append(HostJob(host, [free_port(host.address) for _ in range(SERVICES)]))
        bench = Bench(lab, jobs, work)
        try:
            yield bench
        finally:
            subprocess.run([*BLUMEOPS, "down", str(bench.lab_dir(count))],
                           capture_output=True, check=False, env=_blumeops_env(bench))
            drop_connections(bench.state / "ssh")
            drop_connections(work / "ansible-cp")
    finally:
        lab.close()
        left = reap(work)
        if left:
            print(f"bench_multihost: killed {len(left)} processes left after down: {left}",
                  file=sys.stderr)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--json", type=Path, help="also write every sample here")
    args = parser.parse_args()
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
