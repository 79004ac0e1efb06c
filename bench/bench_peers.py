"""The same idempotent job with peers: the demo's four program files present, its four
ports answering. BlumeOps's no-op apply does that and more (Caddy's config, health probes).

Run three ways on one running demo, each a no-op (asserted from its own summary):
- `ansible-playbook`, connection local (copy + wait_for: a TCP connect per port);
- the same playbook through `ansible-runner`;
- `pyinfra @local` with a deploy file (files.put + server.wait: a netstat LISTEN check
  per port, pyinfra's own way of waiting for a port).

The peers live in their own venv (bench/.venv-peers: `make bench-peers` creates it), as
their dependencies must not mix with the project's. Both Ansible runs get that venv's
Python as interpreter; ansible-runner and pyinfra find their tools on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cli import running_demo
from common import Row, Timer, run_ok

PEERS = Path(__file__).resolve().parent / ".venv-peers"
TOOLS = ("ansible-playbook", "ansible-runner", "pyinfra")

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
WAIT = """    - name: port {port} answers
      ansible.builtin.wait_for:
        host: 127.0.0.1
        port: {port}
        timeout: 5
"""
PUT = """files.put(name="program file {name}", src="{src}", dest="{dest}", mode="644")
"""
PORT = """server.wait(name="port {port} answers", port={port})
"""


def available() -> bool:
    return all((PEERS / "bin" / tool).exists() for tool in TOOLS)


def _no_change(tool: str, out: str, files: int) -> None:
    """Fail unless the run's own summary says it changed no file and nothing failed.
    (pyinfra counts each server.wait as a change: it always runs its check.)"""
    if tool == "pyinfra":
        total = re.search(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
        ok = out.count("] No changes") == files and total is not None
        failed = total is None or total.group(3) != "-"
    else:
        ok = re.search(r"\bchanged=0\b", out) is not None
        failed = re.search(r"\b(failed|unreachable)=[1-9]", out) is not None
    if not ok or failed:
        raise RuntimeError(f"{tool} was not a clean no-op:\n{out[-1500:]}")


def peers_noop(runs: int = 5) -> list[Row]:
    python = str(PEERS / "bin" / "python")
    env = {**os.environ, "PATH": f"{PEERS / 'bin'}:{os.environ['PATH']}",
           "ANSIBLE_NOCOLOR": "1", "PYINFRA_PROGRESS": "off"}
    rows = []
    with running_demo("bo-peer-") as (root, lab, _):
        programs = root / "state" / "supervisor" / "programs"
        copies = root / "peer-files"
        shutil.copytree(programs, copies)
        files = sorted(copies.glob("*.conf"))
        text = (lab / "lab.yaml").read_text()
        ports = [line.rsplit(":", 1)[1].strip(" }") for line in text.splitlines()
                 if line.strip().startswith("ports:")]
        assert len(files) == 4 and len(ports) == 4, (files, ports)
        tasks = "".join(COPY.format(name=p.stem, src=p, dest=programs / p.name) for p in files)
        tasks += "".join(WAIT.format(port=p) for p in ports)
        playbook = PLAYBOOK.format(tasks=tasks)
        (root / "noop.yml").write_text(playbook)
        project = root / "runner" / "project"
        project.mkdir(parents=True)
        (project / "noop.yml").write_text(playbook)
        (root / "runner" / "env").mkdir()
        (root / "runner" / "env" / "extravars").write_text(
            json.dumps({"ansible_python_interpreter": python}))
        (root / "deploy.py").write_text(
            "from pyinfra.operations import files, server\n"
            + "".join(PUT.format(name=p.stem, src=p, dest=programs / p.name) for p in files)
            + "".join(PORT.format(port=p) for p in ports))
        commands = {
            "ansible-playbook": [str(PEERS / "bin" / "ansible-playbook"), "-i", "localhost,",
                                 str(root / "noop.yml"), "-e",
                                 f"ansible_python_interpreter={python}"],
            "ansible-runner": [str(PEERS / "bin" / "ansible-runner"), "run",
                               str(root / "runner"), "-p", "noop.yml"],
            "pyinfra": [str(PEERS / "bin" / "pyinfra"), "@local", str(root / "deploy.py"),
                        "-y"],
        }
        labels = {"ansible-playbook": "`ansible-playbook`, connection local",
                  "ansible-runner": "the same playbook through `ansible-runner`",
                  "pyinfra": "`pyinfra @local` deploy file"}
        for tool, cmd in commands.items():
            outputs: list[str] = []

            def once(cmd: list[str] = cmd, outputs: list[str] = outputs) -> None:
                proc = run_ok(cmd, env, cwd=root)
                outputs.append(proc.stdout + proc.stderr)

            times = Timer(once).run(runs)
            for out in outputs:
                _no_change(tool, out, len(files))
            rows.append(Row(f"same idempotent job: {labels[tool]}", times,
                            note="4 program files, 4 port checks; a no-op", target="(peer)"))
    return rows


if __name__ == "__main__":
    for row in peers_noop():
        print(row.as_dict())
