"""`brew@HOST`: Homebrew formulae run by `brew services`, on a host reached over SSH.

Each resource is one service's formula (render/brew.py). The driver converges it to
"installed, and its service started" with Homebrew's own commands, run through the
transport with no shell: `brew install F` when `brew services info` does not list it,
then `brew services start F`; `brew services restart F` when its service errored;
`brew services stop F` when it leaves the catalog (the formula stays installed: other
things may use it). The SSH user's PATH must find `brew` (/opt/homebrew/bin on Apple
silicon: add it in ~/.zshenv or the ssh config's SetEnv).

Round trips: observing rides in the host's one batch (`brew services info --all --json`
plus each service's probe); the health table after a no-op reuses it; a change is one
more round trip. Only formulae this machine started are ever stopped: they are kept in
`STATE/brew/HOST.json` here, never guessed from what the host happens to run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.health import Health, ServiceHealth
from blumeops.core.plan import Change, Live
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.remote_services import probed_health
from blumeops.drivers.units import Batch, failure
from blumeops.render.brew import brewfile_line
from blumeops.transports.base import run_request

if TYPE_CHECKING:
    from blumeops.core.health import ServiceHealth
    from blumeops.transports.base import Transport
    from blumeops.transports.types import JSON

INFO = ("brew", "services", "info", "--all", "--json")
STARTED = "started"


def formula_of(body: str) -> str:
    """The formula a rendered one-line Brewfile names."""
    return body.split('"')[1] if body.count('"') >= 2 else ""


def parse_info(answer: JSON) -> tuple[dict[str, dict[str, Any]], str]:
    """`brew services info --all --json` -> ({formula: entry}, "") or ({}, why not)."""
    if "error" in answer:
        return {}, str(answer.get("message") or answer["error"])
    if answer.get("returncode") != 0:
        said = (str(answer.get("stderr") or answer.get("stdout") or "")).strip()
        return {}, f"`brew services info` exited {answer.get('returncode')}: {said[-200:]}"
    try:
        entries = json.loads(str(answer.get("stdout") or "[]"))
    except ValueError:
        return {}, "`brew services info --json` did not answer JSON"
    if not isinstance(entries, list):
        return {}, "`brew services info --json` did not answer a list"
    return {str(e["name"]): e for e in entries if isinstance(e, dict) and "name" in e}, ""


class BrewDriver(Driver):
    kind = "brew"
    order = 30
    manages_services = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._info: dict[str, dict[str, Any]] = {}
        self._why = ""  # why the host's brew could not be read, if it could not
        self._probes: dict[str, JSON] | None = None
        self._probe_names: list[str] = []
        self._started = self._load()  # service -> formula this machine started

    @property
    def transport(self) -> Transport:
        assert self.ctx.transport is not None, "brew services are reached over a transport"
        return self.ctx.transport

    def formulae(self) -> dict[str, str]:
        """Service -> formula, as rendered."""
        return {r.name: r.meta.get("formula") or formula_of(r.body) for r in self.resources}

    # -- what this machine started (kept here, per host) -------------------------------

    def _record_path(self) -> str:
        return str(self.ctx.state_dir / "brew" / f"{self.ctx.name}.json")

    def _load(self) -> dict[str, str]:
        try:
            with open(self._record_path(), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self) -> None:
        path = self._record_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(dict(sorted(self._started.items())), f)
        os.replace(path + ".tmp", path)

    # -- observe -------------------------------------------------------------------------

    def _probe_ops(self, names: Sequence[str]) -> dict[str, JSON]:
        ops: dict[str, JSON] = {}
        for name in names:
            svc = self.ctx.spec.services.get(name)
            if svc is None or svc.probe is None or svc.probe.kind == "command" \
                    or not svc.probe.port:
                continue
            ops[name] = {"op": "probe", "kind": svc.probe.kind, "host": svc.address,
                         "port": svc.probe.port, "path": svc.probe.path,
                         "timeout": svc.probe.timeout}
        return ops

    def _ops(self, names: Sequence[str]) -> tuple[list[JSON], list[str]]:
        probes = self._probe_ops(names)
        info, _ = run_request(list(INFO), timeout=60.0)
        return [info, *probes.values()], list(probes)

    def observe_ops(self) -> list[JSON]:
        ops, self._probe_names = self._ops(sorted(self.formulae()))
        return ops

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        self._read(answers, self._probe_names)
        return self._live()

    def _read(self, answers: Sequence[JSON], probe_names: Sequence[str]) -> None:
        self._info, self._why = parse_info(answers[0]) if answers else ({}, "no answer")
        self._probes = dict(zip(probe_names, answers[1:], strict=True))

    def _look(self, names: Sequence[str]) -> None:
        ops, probe_names = self._ops(names)
        result = self.transport.call({"op": "batch", "ops": ops})
        self._read(list(result["results"]), probe_names)

    def _live(self) -> dict[str, Live]:
        live: dict[str, Live] = {}
        wanted = self.formulae()
        # What blumeops started earlier and the catalog dropped: still there to stop.
        dropped = {s: f for s, f in self._started.items() if s not in wanted}
        for name, formula in {**dropped, **wanted}.items():
            entry = self._info.get(formula)
            if entry is None:
                continue  # not installed (or has no service): nothing of ours runs
            status = str(entry.get("status") or "none")
            running = status == STARTED and entry.get("running") is not False
            if name in dropped and status != STARTED:
                continue  # stopped already
            live[f"{self.target}/formula/{name}"] = Live(brewfile_line(formula), running,
                                                         status)
        return live

    # -- apply ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        self._probes = None
        if self._why:
            return {c.id: f"cannot read Homebrew on {self.ctx.name}: {self._why}"
                    for c in changes}
        batch = Batch()
        steps: dict[str, list[int]] = {}
        formulae = {**self._started, **self.formulae()}
        for change in changes:
            formula = formulae.get(change.name, "")
            entry = self._info.get(formula)
            argvs: list[list[str]] = []
            if change.desired is None:
                argvs.append(["brew", "services", "stop", formula])
            else:
                if entry is None:
                    argvs.append(["brew", "install", formula])
                status = str(entry.get("status") or "none") if entry else "none"
                verb = "restart" if status in ("error", STARTED) else "start"
                argvs.append(["brew", "services", verb, formula])
            steps[change.id] = [batch.run(argv, timeout=900.0) for argv in argvs]
        result = batch.send(self.transport)
        errors: dict[str, str] = {}
        for change in changes:
            for index in steps[change.id]:
                run = result.run(index)
                if run.returncode != 0:
                    errors[change.id] = failure(run)
                    break
            else:
                if change.desired is None:
                    self._started.pop(change.name, None)
                else:
                    self._started[change.name] = formulae[change.name]
        self._save()
        return errors

    # -- health ----------------------------------------------------------------------------

    def health(self, services: Sequence[str],
               started: Mapping[str, float]) -> dict[str, ServiceHealth]:
        wanted = self.formulae()
        mine = [n for n in services if n in wanted]
        cached, self._probes = self._probes, None
        if cached is None or started:
            self._look(mine)
            cached, self._probes = self._probes, None
        probes = cached or {}
        where = f"on {self.ctx.name}"
        out = {}
        for name in mine:
            svc = self.ctx.spec.services[name]
            entry = self._info.get(wanted[name])
            if self._why:
                out[name] = ServiceHealth(name, Health.unknown, f"{self._why} {where}",
                                          urls=svc.urls)
                continue
            if entry is None:
                out[name] = ServiceHealth(name, Health.missing,
                                          f"formula {wanted[name]} not installed {where}",
                                          urls=svc.urls)
                continue
            status = str(entry.get("status") or "none")
            pid = entry.get("pid") if isinstance(entry.get("pid"), int) else None
            if status != STARTED:
                code = entry.get("exit_code")
                out[name] = ServiceHealth(
                    name, Health.degraded,
                    f"brew services: {status}" + (f" (exit {code})" if code else "")
                    + f" {where}", status, pid, svc.urls)
                continue
            out[name] = probed_health(svc, probes.get(name), started, where, status, pid,
                                      up="started")
        return out

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, formula in self.formulae().items():
            pid = self._info.get(formula, {}).get("pid")
            out[name] = pid if isinstance(pid, int) else None
        return out

    def down(self) -> list[str]:
        """Stop every formula this machine started on the host (they stay installed)."""
        if not self._started:
            return []
        batch = Batch()
        steps = {name: batch.run(["brew", "services", "stop", formula])
                 for name, formula in sorted(self._started.items())}
        result = batch.send(self.transport)
        stopped = [name for name, i in steps.items() if result.run(i).returncode == 0]
        for name in stopped:
            self._started.pop(name, None)
        self._save()
        return [f"{self.ctx.name}: {name} (brew)" for name in stopped]
