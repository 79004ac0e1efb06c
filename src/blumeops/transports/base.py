"""What every transport offers: one round trip to the agent, files in one batch, close.

A transport subclass only says how bytes reach a host's python3 (`call`) and how to let
go of the connection (`close`). Observing, writing files and running a command are built
here on `call`, so they behave the same on this machine and over SSH.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from blumeops.transports import answers
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import (
    JSON,
    FileBatch,
    FileState,
    HostFacts,
    ManagerFacts,
    Observation,
    ObserveRequest,
    PortCheck,
    PutResult,
    RunResult,
)


class Transport(ABC):
    """How blumeops reaches one host. Thread-safe: hosts and calls may run in parallel."""

    host: str

    def call(self, request: JSON, blobs: Sequence[bytes] = ()) -> JSON:
        """Send one request (see `agent` for the schema) and return the agent's result,
        checked against the shape its op promises (`answers`).

        Raises HostUnreachable when the host cannot be reached (or did not answer within
        the request's budget) and RemoteError when it answered with an error or with
        something unusable (answers.BadAnswer).
        """
        seconds = answers.budget(request, blobs)
        # The agent stops itself at the deadline too: nothing stays behind on the host.
        result = self.send({**request, "deadline": seconds}, blobs, seconds)
        return answers.check(self.host, request, result)

    @abstractmethod
    def send(self, request: JSON, blobs: Sequence[bytes], seconds: float) -> JSON:
        """One round trip, as it comes back (unchecked), within `seconds` of work on the
        host; at most answers.MAX_ANSWER bytes are read."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the connection; the next call opens a new one."""

    def put_files(self, batch: FileBatch) -> PutResult:
        """Write and remove files in one round trip, each write atomic on the host."""
        request, blobs = put_request(batch)
        return parse_put(self.call(request, blobs))

    def observe(self, request: ObserveRequest) -> Observation:
        """Host facts, file hashes, ports and pidfiles, in one round trip."""
        return parse_observation(self.call(observe_request(request)))

    def facts(self) -> HostFacts:
        return self.observe(ObserveRequest()).facts

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            stdin: bytes | None = None, cwd: str | None = None,
            timeout: float = 60.0) -> RunResult:
        """Run `argv` on the host without a shell; `env` and `stdin` travel on stdin."""
        request, blobs = run_request(argv, env=env, stdin=stdin, cwd=cwd, timeout=timeout)
        return parse_run(argv, self.call(request, blobs))

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- requests and results: plain functions, so a batch op can reuse them -------------


def put_request(batch: FileBatch) -> tuple[JSON, list[bytes]]:
    files = [{"path": w.path, "size": len(w.content), "mode": w.effective_mode,
              "owner": w.owner} for w in batch.writes]
    request: JSON = {"op": "put", "files": files, "removes": list(batch.removes),
                     "root": batch.root}
    if batch.prune:
        request["prune"] = True
    return request, [w.content for w in batch.writes]


def parse_put(result: JSON) -> PutResult:
    return PutResult(written=tuple(result["written"]), removed=tuple(result["removed"]),
                     swept=tuple(result.get("swept", ())))


def observe_request(request: ObserveRequest, timeout: float = 1.0) -> JSON:
    return {"op": "observe", "paths": list(request.paths),
            "ports": [[p.host, p.port] for p in request.ports],
            "pidfiles": list(request.pidfiles),
            "supervisor_socket": request.supervisor_socket, "timeout": timeout}


def sub_result(host: str, answer: JSON) -> JSON:
    """One read-only op's answer in a batch, or the error it answered in its place
    raised as a RemoteError (answers.py has checked it is one or the other)."""
    if "error" in answer and isinstance(answer.get("message"), str):
        raise RemoteError(host, str(answer["error"]), f"host {host}: {answer['message']}")
    return answer


def parse_facts(data: Mapping[str, Any]) -> HostFacts:
    managers = {name: ManagerFacts(name=name, path=m.get("path"), running=bool(m["running"]))
                for name, m in data.get("managers", {}).items()}
    return HostFacts(
        system=data["system"], machine=data["machine"], python=data.get("python"),
        hostname=data.get("hostname", ""), release=data.get("release", ""),
        user=data.get("user", ""), home=data.get("home", ""),
        uid=data["uid"] if isinstance(data.get("uid"), int) else None,
        synology=bool(data.get("synology")), managers=managers,
    )


def parse_observation(result: JSON) -> Observation:
    files = {path: FileState(path=path, exists=s["exists"], kind=s["kind"],
                             sha256=s.get("sha256"), mode=s.get("mode"), size=s.get("size"),
                             owner=s.get("owner"))
             for path, s in result["files"].items()}
    ports = {PortCheck(a, int(p)): bool(o) for a, p, o in result["ports"]}
    return Observation(facts=parse_facts(result["facts"]), files=files, ports=ports,
                       pidfiles=dict(result["pidfiles"]))


def run_request(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                stdin: bytes | None = None, cwd: str | None = None,
                timeout: float = 60.0) -> tuple[JSON, list[bytes]]:
    request: JSON = {"op": "run", "argv": list(argv), "env": dict(env or {}), "cwd": cwd,
                     "timeout": timeout, "stdin": None if stdin is None else len(stdin)}
    return request, [] if stdin is None else [stdin]


def parse_run(argv: Sequence[str], result: JSON) -> RunResult:
    return RunResult(argv=tuple(argv), returncode=int(result["returncode"]),
                     stdout=result["stdout"], stderr=result["stderr"])
