"""Real test hosts: one Debian `sshd` per host on a loopback alias (127.0.1.11, .12, ...).

Each host gets host keys generated for this run, its own authorized_keys, a root
directory that is its HOME, and a PATH whose `python3` is the Python we choose (3.9 by
default, as on a Mac), set with sshd's SetEnv. The client side is a private ssh_config and
known_hosts in the lab's directory, so the user's own ~/.ssh is never read or written.
Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from blumeops.core.sshtarget import SshTarget
from blumeops.transports import wire
from blumeops.transports.ssh import SshTransport, control_dir
from requires import MAKE_TOOLS, PYENV, needs, require

SSHD = "/usr/sbin/sshd"
FIRST_ADDRESS = 11  # 127.0.1.11 is the first host


def pyenv_python(minor: str) -> str | None:
    """A real pythonX.Y binary from pyenv (not its shim), or None."""
    pattern = os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python{minor}")
    found = sorted(glob.glob(pattern))
    return found[-1] if found else None


PY39 = pyenv_python("3.9")
needs_py39 = needs(PY39, "pyenv python3.9", PYENV.format(minor="3.9"))


def python39() -> str:
    """PY39, inside a test that needs it (tests/requires.py)."""
    return require(PY39, "pyenv python3.9", PYENV.format(minor="3.9"))


def python38() -> str:
    """A real python3.8, for tests of the refusal of old interpreters."""
    return require(pyenv_python("3.8"), "pyenv python3.8", PYENV.format(minor="3.8"))


_SSHD_MISSING = [(what, how) for found, what, how in [
    (os.path.exists(SSHD), f"{SSHD} (Debian openssh-server)", MAKE_TOOLS),
    (PY39, "pyenv python3.9", PYENV.format(minor="3.9")),
    (os.geteuid() == 0, "root", "run the tests as root")] if not found]
needs_sshd = needs(not _SSHD_MISSING, " and ".join(w for w, _ in _SSHD_MISSING),
                   "; ".join(h for _, h in _SSHD_MISSING))


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    out = []
    for kid in _children(pid):
        out += [kid, *descendants(kid)]
    return out


def ssh_children() -> list[int]:
    """`ssh` client processes started by this test process (not the detached masters)."""
    out = []
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh":
                out.append(pid)
    return out


@dataclass
class SshHost:
    name: str
    address: str
    port: int
    dir: Path  # sshd's config, keys and log
    root: Path  # the host's HOME: where its files live
    authorized_keys: Path
    python: str | None
    log_level: str = "VERBOSE"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    def generate_host_key(self) -> None:
        for path in (self.host_key, self.host_key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name,
                        "-f", str(self.host_key)], check=True)

    def known_hosts_entry(self) -> str:
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {kind} {key}\n"

    def write_config(self) -> None:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        link = bin_dir / "python3"
        link.unlink(missing_ok=True)
        if self.python:
            link.symlink_to(self.python)
        # Without /usr/bin on PATH a host with python=None really has no python3.
        path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin" if self.python else str(bin_dir)
        (self.dir / "sshd_config").write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"LogLevel {self.log_level}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UseDNS no\nPrintMotd no\nX11Forwarding no\nMaxStartups 100\n"
            f"SetEnv PATH={path} HOME={self.root}\n"
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.write_config()
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.dir / "sshd_config"), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd for {self.name} exited: {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (self.address, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"sshd for {self.name} did not listen on {self.address}:{self.port}")

    def stop(self) -> None:
        """Stop the listener and every session it forked (open connections die too)."""
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connections(self) -> int:
        """SSH connections sshd authenticated so far (each is its own TCP connection)."""
        return self.log_text().count("Accepted publickey for ")

    def sessions(self) -> int:
        """Commands sshd started (one per round trip)."""
        return self.log_text().count("Starting session: command")


def hostile_python(host: SshHost, answer: str) -> None:
    """Replace the host's python3 with a script that reads the request and prints
    `answer` (shell code writing to stdout) after the agent's marker."""
    script = host.root / "bin" / "python3"
    script.unlink()
    script.write_text("#!/bin/sh\ncat >/dev/null\nprintf '\\n##blumeops-agent-response##\\n'\n"
                      + answer + "\n")
    script.chmod(0o755)


def restore_python(host: SshHost) -> None:
    """The host's own python3 again, after `hostile_python`."""
    script = host.root / "bin" / "python3"
    script.unlink()
    assert host.python
    script.symlink_to(host.python)


def agents_on(host: SshHost) -> list[int]:
    """The host's processes running the agent (python3 -c BOOTSTRAP)."""
    out = []
    for pid in descendants(host.proc.pid if host.proc else 0):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if wire.BOOTSTRAP.encode() in cmdline:
            out.append(pid)
    return out


@dataclass
class SshLab:
    """Several test hosts and one client configuration that knows them."""

    dir: Path
    hosts: dict[str, SshHost] = field(default_factory=dict)
    transports: list[SshTransport] = field(default_factory=list)

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def client_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def control(self) -> Path:
        return control_dir(self.dir / "state")

    def setup(self) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "blumeops-test",
                        "-f", str(self.client_key)], check=True)
        self.known_hosts.write_text("")
        self.write_client_config()

    def add_host(self, name: str, *, known: bool = True, python: str | None = PY39,
                 log_level: str = "VERBOSE", address: str | None = None,
                 tools: tuple[str, ...] = ()) -> SshHost:
        """A new host; `tools` are commands of this venv (supervisord, caddy) linked
        into its bin dir, so they are on its PATH as if installed there."""
        address = address or f"127.0.1.{FIRST_ADDRESS + len(self.hosts)}"
        assert address.startswith("127."), "test hosts stay on loopback"
        hdir = self.dir / "hosts" / name
        hdir.mkdir(parents=True)
        keys = hdir / "authorized_keys"
        keys.write_text(self.client_key.with_suffix(".pub").read_text())
        host = SshHost(name=name, address=address, port=free_port(address), dir=hdir,
                       root=hdir / "root", authorized_keys=keys, python=python,
                       log_level=log_level)
        host.root.mkdir()
        (host.root / "bin").mkdir()
        for tool in tools:
            (host.root / "bin" / tool).symlink_to(Path(sys.executable).parent / tool)
        host.generate_host_key()
        host.start()
        self.hosts[name] = host
        if known:
            with self.known_hosts.open("a") as f:
                f.write(host.known_hosts_entry())
        self.write_client_config()
        return host

    def write_client_config(self) -> None:
        blocks = [
            f"Host {h.name}\n  HostName {h.address}\n  Port {h.port}\n  User root\n"
            for h in self.hosts.values()
        ]
        common = (f"Host *\n  IdentityFile {self.client_key}\n  IdentitiesOnly yes\n"
                  f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n")
        self.ssh_config.write_text("".join(blocks) + common)

    def target(self, name: str, **changes: object) -> SshTarget:
        return replace(SshTarget(destination=name, config_file=str(self.ssh_config)),
                       **changes)  # type: ignore[arg-type]

    def transport(self, name: str, **changes: object) -> SshTransport:
        t = SshTransport(name, self.target(name, **changes), self.control, persist=60)
        self.transports.append(t)
        return t

    def close_transports(self) -> None:
        """End every shared connection (ssh -O exit), as a new blumeops run would find."""
        for t in self.transports:
            with contextlib.suppress(Exception):
                t.close()
        self.transports.clear()

    def close(self) -> None:
        self.close_transports()
        for host in self.hosts.values():
            host.stop()


@pytest.fixture(name="ssh_lab")
def ssh_lab_fixture() -> Iterator[SshLab]:
    # A short path: control sockets must fit a unix socket path.
    lab = SshLab(Path(tempfile.mkdtemp(prefix="bo-ssh-", dir="/tmp")))
    lab.setup()
    try:
        yield lab
    finally:
        lab.close()
        shutil.rmtree(lab.dir, ignore_errors=True)
