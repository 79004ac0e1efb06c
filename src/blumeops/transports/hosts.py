"""Which transport reaches a catalog host: this machine for `local: true`, else SSH.

The one place the engine needs to ask; drivers then speak `Transport` and never care
which one they got.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from blumeops.catalog.model import Lab
from blumeops.core.sshtarget import SshTarget
from blumeops.transports.base import Transport
from blumeops.transports.local import LocalTransport
from blumeops.transports.ssh import SshTransport, control_dir


def transport_for(lab: Lab, name: str, state_dir: Path, *, accept_new: bool = False,
                  ssh_config: str | None = None) -> Transport:
    """The transport for host `name`. `accept_new` (the CLI flag) or the host's
    `accept_new_host_key` opts into first-contact host keys; `ssh_identity` becomes ssh -i;
    `ssh_config` replaces ~/.ssh/config (ssh -F), for tests and CI."""
    host = lab.hosts[name]
    if host.local:
        return LocalTransport(name)
    target = replace(SshTarget.for_host(name, host), identity_file=host.ssh_identity,
                     accept_new=accept_new or host.accept_new_host_key, config_file=ssh_config)
    return SshTransport(name, target, control_dir(state_dir))
