"""The same idempotent job with Ansible: the demo's program files present, its services
answering. BlumeOps's no-op apply does that and more (Caddy's config, health probes).

Ansible lives in its own venv (bench/.venv-peers: `make bench-peers` creates it), since
its dependencies must not mix with the project's. ansible-runner needs that venv's bin on
PATH, as it runs ansible-playbook.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cli import running_demo

PEERS = Path(__file__).resolve().parent / ".venv-peers"

PLAYBOOK = """- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
{tasks}
"""
COPY = """    - name: program file {name}
      ansible.builtin.copy:
        src: {src}
        dest: {dest}
        mode: "0644"
"""
WAIT = """    - name: {name} answers
      ansible.builtin.wait_for:
        host: 127.0.0.1
        port: {port}
        timeout: 5
"""


def ansible_noop(runs: int = 5) -> dict[str, float] | None:
    runner = PEERS / "bin" / "ansible-runner"
    if not runner.exists():
        return None
    with running_demo("bo-peer-") as (root, lab, _):
        programs = root / "state" / "supervisor" / "programs"
        copies = root / "ansible-files"
        shutil.copytree(programs, copies)
        tasks = "".join(COPY.format(name=p.stem, src=p, dest=programs / p.name)
                        for p in sorted(copies.glob("*.conf")))
        text = (lab / "lab.yaml").read_text()
        ports = [line.rsplit(":", 1)[1].strip(" }") for line in text.splitlines()
                 if line.strip().startswith("ports:")]
        tasks += "".join(WAIT.format(name=f"port {p}", port=p) for p in ports)
        project = root / "runner" / "project"
        project.mkdir(parents=True)
        (project / "noop.yml").write_text(PLAYBOOK.format(tasks=tasks))
        run_env = {**os.environ, "PATH": f"{PEERS / 'bin'}:{os.environ['PATH']}"}
        cmd = [str(runner), "run", str(root / "runner"), "-p", "noop.yml", "--quiet"]
        subprocess.run(cmd, env=run_env, check=True, capture_output=True)  # warm
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(cmd, env=run_env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 3), "best_s": round(min(times), 3),
            "tasks": tasks.count("- name:")}


if __name__ == "__main__":
    print("ansible no-op of the same job:", ansible_noop())
