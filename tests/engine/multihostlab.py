"""examples/multihost on three real test hosts: one sshd each for gate, app and data,
each with python3 3.9 and this venv's supervisord and caddy on its PATH.

The example's addresses (127.0.1.21-23) are overlaid with three loopback addresses
picked per run (127.0.1.100-249) on which none of the lab's ports is taken, so two runs
side by side, or processes an interrupted run left behind, do not collide.

The CLI runs as a user would, with a private ssh config (BLUMEOPS_SSH_CONFIG) and a
private age key; teardown runs `blumeops down` and fails the test if any process of the
lab is left behind on any host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transports"))

from demolab import lab_pids, reap
from sshhost import SshHost, SshLab, needs_sshd

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The example's own addresses, replaced in the test's copy of lab.yaml.
EXAMPLE_ADDRESSES = {"gate": "127.0.1.21", "app": "127.0.1.22", "data": "127.0.1.23"}
PROXY_PORT = 8080
# Every port the lab listens on (Caddy, status, web, store, the gaps tests' extras).
LAB_PORTS = (PROXY_PORT, 18211, 18221, 18222, 18231)
TOKEN = "multihost-store-token"

__all__ = ["MultiLab", "multihost_fixture", "needs_sshd", "pick_addresses"]


def _free(address: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_addresses(names: tuple[str, ...] = ("gate", "app", "data")) -> dict[str, str]:
    """One loopback address per host on which every port of the lab is free: random, so
    concurrent runs rarely try the same, and checked, so leftovers are stepped around."""
    import random

    candidates = [f"127.0.1.{n}" for n in range(100, 250)]
    random.shuffle(candidates)
    chosen = [a for a in candidates if all(_free(a, p) for p in LAB_PORTS)][:len(names)]
    assert len(chosen) == len(names), "no free loopback addresses left in 127.0.1.100-249"
    return dict(zip(names, chosen, strict=True))


@dataclass
class MultiLab:
    ssh: SshLab
    root: Path
    env: dict[str, str]
    addresses: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    @property
    def lab(self) -> Path:
        return self.root / "lab"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def host(self, name: str) -> SshHost:
        return self.ssh.hosts[name]

    def remote_state(self, name: str) -> Path:
        return self.host(name).root / ".local" / "state" / "blumeops" / "multihost"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "blumeops", *args]

    def run(self, *args: str, input: str | None = None, check: bool = False,
            timeout: float = 180, python_flags: bool = False
            ) -> subprocess.CompletedProcess[str]:
        """`blumeops ARGS`; with python_flags, ARGS are the interpreter's own."""
        cmd = [sys.executable, *args] if python_flags else [sys.executable, "-m", "blumeops",
                                                             *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, input=input,
                              timeout=timeout, check=False, cwd=self.root)
        self.outputs.append(proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout}"
                                 f"\n{proc.stderr}")
        return proc

    def cli(self, command: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(command, str(self.lab), "--state-dir", str(self.state), *args, **kw)

    def get(self, name: str, path: str = "/") -> httpx.Response:
        """Through gate's Caddy, as a browser sends it."""
        return httpx.get(f"http://{self.addresses['gate']}:{PROXY_PORT}{path}",
                         headers={"Host": f"{name}.mh.localhost"}, timeout=5)


@pytest.fixture(name="multihost")
def multihost_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiLab]:
    import tempfile

    ssh = SshLab(Path(tempfile.mkdtemp(prefix="bo-mh-", dir="/tmp")))
    ssh.setup()
    addresses = pick_addresses()
    for name, address in addresses.items():
        ssh.add_host(name, address=address, tools=("supervisord", "caddy"))
    root = ssh.dir / "ctl"
    root.mkdir()
    shutil.copytree(EXAMPLES / "multihost", root / "lab",
                    ignore=shutil.ignore_patterns("vault.age", "vault.recipients", "*.sh"))
    catalog = root / "lab" / "lab.yaml"
    text = catalog.read_text()
    assert all(a in text for a in EXAMPLE_ADDRESSES.values())
    swap = {a: addresses[n] for n, a in EXAMPLE_ADDRESSES.items()}
    # One pass, whole addresses only: a picked address may hold an example's as a prefix.
    catalog.write_text(re.sub(r"\b127\.0\.1\.\d+\b", lambda m: swap.get(m[0], m[0]), text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUMEOPS_")}
    env["BLUMEOPS_AGE_KEY"] = str(root / "age.key")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    env["BLUMEOPS_SSH_CONFIG"] = str(ssh.ssh_config)
    lab = MultiLab(ssh, root, env, addresses)
    lab.run("secret", "set", str(lab.lab), "multihost/store-token", input=TOKEN + "\n",
            check=True)
    try:
        yield lab
    finally:
        for host in ssh.hosts.values():
            if host.proc is None:
                host.start()
        lab.cli("down")
        # End the shared connections this run's ssh masters hold.
        for pid in lab_pids(str(ssh.dir)):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "ssh":
                os.kill(pid, 15)
        ssh.close()
        left = reap(ssh.dir)
        assert not left, f"processes left behind after down: {left}"
