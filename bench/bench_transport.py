"""How long observing N hosts over SSH takes: first contact, then on the shared connection.

    .venv/bin/python bench/bench_transport.py [--runs 5]

Hosts are real sshd processes on 127.0.1.11-30 (the test fixture in tests/transports),
each with a python3.9 `python3`. One observe = host facts + sha256 of 4 files, one round
trip per host, all hosts in parallel. "first" opens every connection (TCP, key exchange,
auth: what a fresh `blumeops plan` pays); "reused" runs on the multiplexed connections.
Needs root and Debian openssh-server (`make tools`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # sshhost uses tests/requires.py
sys.path.insert(0, str(ROOT / "tests" / "transports"))

from sshhost import PY39, SSHD, SshLab  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from blumeops.transports.ssh import SshTransport  # noqa: E402
from blumeops.transports.types import FileBatch, FileWrite, ObserveRequest  # noqa: E402
from common import Row  # noqa: E402

SIZES = (1, 5, 20)
FILES = 4


def observe_all(transports: list[SshTransport], requests: list[ObserveRequest]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(len(transports)) as pool:
        list(pool.map(lambda tr: tr[0].observe(tr[1]), zip(transports, requests, strict=True)))
    return time.perf_counter() - start


def measure(runs: int) -> list[tuple[int, float, float]]:
    """(hosts, median first-contact seconds, median reused seconds) for each size."""
    if not Path(SSHD).exists() or PY39 is None:
        sys.exit("needs /usr/sbin/sshd (make tools) and a pyenv python3.9")
    lab = SshLab(Path(tempfile.mkdtemp(prefix="bo-bench-", dir="/tmp")))
    lab.setup()
    rows = []
    try:
        hosts = [lab.add_host(f"h{i:02d}") for i in range(max(SIZES))]
        requests = []
        for host in hosts:  # each host holds the files a no-op apply would compare
            paths = [str(host.root / "svc" / f"file{j}.conf") for j in range(FILES)]
            with lab.transport(host.name) as t:
                t.put_files(FileBatch(writes=[FileWrite(p, b"x" * 2048) for p in paths]))
            requests.append(ObserveRequest(paths=paths))
        for n in SIZES:
            first = []
            for _ in range(runs):
                lab.close_transports()
                transports = [lab.transport(h.name) for h in hosts[:n]]
                first.append(observe_all(transports, requests[:n]))
            reused = [observe_all(transports, requests[:n]) for _ in range(runs)]
            rows.append((n, statistics.median(first), statistics.median(reused)))
    finally:
        lab.close()
        shutil.rmtree(lab.dir, ignore_errors=True)
    return rows


def rows(quick: bool) -> list[Row]:
    """For bench/run.py: one observe round trip per host, all hosts in parallel."""
    out = []
    runs = 2 if quick else 5
    for n, first_s, reused_s in measure(runs):
        out.append(Row(f"SSH observe of {n} host(s) in parallel, first contact", [first_s],
                       note=f"median of {runs}"))
        out.append(Row(f"SSH observe of {n} host(s) in parallel, reused connection",
                       [reused_s], note=f"median of {runs}; {reused_s * 1000 / n:.1f} ms/host"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = measure(args.runs)
    print(f"observe over SSH (facts + {FILES} file hashes per host), hosts in parallel, "
          f"median of {args.runs}")
    print(f"{'hosts':>5}  {'first call':>10}  {'reused':>8}  {'reused per host':>15}")
    for n, first_s, reused_s in rows:
        print(f"{n:>5}  {first_s * 1000:>8.0f}ms  {reused_s * 1000:>6.0f}ms  "
              f"{reused_s * 1000 / n:>13.1f}ms")
    (n1, _, r1), (nk, _, rk) = rows[0], rows[-1]
    print(f"cost of each added host (reused, {n1}->{nk} hosts): "
          f"{(rk - r1) * 1000 / (nk - n1):.1f} ms")


if __name__ == "__main__":
    main()
