"""`files@HOST` over a transport: a native service's `files:` on a remote host.

Each file is checked by hash in the host's observe round trip and all writes go in one
atomic batch (temp file + rename on the host). Relative paths land in the service's
working directory there: its lab dir + workdir, the lab dir being the one its service
manager runs it in (`managed.host_lab_dir`: STATE/lab under blumeops's supervisord,
%S/blumeops/lab for systemd, /usr/local/var/blumeops/lab for launchd); files of a
service with secrets are 0600.

What blumeops wrote is listed on the host in STATE/files.json (resource name -> path),
updated in the same batch as the files. A file dropped from the catalog is found there,
shown by `plan` as a delete, and removed by `apply` - only files that index names, and
only under the host's lab dir (the agent refuses a removal that resolves outside it), so
a file blumeops did not write is never touched. `down` removes every file the index
names, then the index. Either way the directories a removal leaves empty go too (up to
the lab dir); a directory that still holds anything stays.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blumeops.core.plan import Change, Live
from blumeops.core.resources import Resource
from blumeops.drivers.base import Driver, Secrets
from blumeops.drivers.managed import host_lab_dir
from blumeops.drivers.remote_services import index_op, index_trouble, parse_index, workdir
from blumeops.transports.base import parse_facts, put_request, sub_result
from blumeops.transports.exceptions import RemoteError
from blumeops.transports.types import FileBatch, FileWrite

if TYPE_CHECKING:
    from blumeops.transports.types import JSON

# What a file blumeops wrote and the catalog no longer declares shows as, in a plan.
GONE = "(written by blumeops; no longer in the catalog)\n"


class RemoteFiles(Driver):
    kind = "files"
    order = 10

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index: dict[str, str] = {}  # resource name -> path on the host
        self._asked: list[str] = []
        self._observed = False  # observe_ops asked (False: the SSH user was not known)
        self._rewrite_index = False  # the host's index is damaged: apply writes it whole

    def _base(self) -> str | None:
        return host_lab_dir(self.ctx)

    def _dest(self, res: Resource) -> str:
        svc = self.ctx.spec.services.get(res.service or "")
        dest = res.meta.get("dest", res.name)
        if dest.startswith("/"):
            return dest
        base = self._base()
        assert base is not None, "the host's lab dir is known once its facts are"
        return posixpath.join(workdir(base, svc), dest)

    def index_path(self) -> str:
        return self.ctx.remote_path("files.json")

    def observe_ops(self) -> list[JSON]:
        # The paths as asked ("~/..." until the host's facts give its home): the answer
        # is keyed by them.
        self._observed = self._base() is not None
        if not self._observed:
            return []  # first contact with a unit host: asked once its SSH user is known
        return self._ops()

    def _ops(self) -> list[JSON]:
        self._asked = [self._dest(r) for r in self.resources]
        return [{"op": "observe", "paths": self._asked},
                index_op(self.index_path(), stat=True, root=self._root())]

    def observe(self, answers: Sequence[JSON]) -> dict[str, Live]:
        if not self._observed and self.ctx.transport is not None:
            answers = self.ctx.transport.call({"op": "batch", "ops": self._ops()})["results"]
        files = answers[0].get("files", {}) if answers else {}
        written = answers[1] if len(answers) > 1 else {}
        self._index = parse_index(written)
        # A damaged index (or one naming paths outside the lab dir) is written again by
        # the next apply: until then every file shows as an update, with the reason.
        trouble = index_trouble(written)
        self._rewrite_index = bool(trouble)
        live = {}
        for res, path in zip(self.resources, self._asked, strict=True):
            state = files.get(path, {})
            if not state.get("exists"):
                continue
            same = state.get("sha256") == hashlib.sha256(res.body.encode()).hexdigest()
            live[res.id] = Live(res.body if same else "(differs on the host)", reason=trouble)
        desired = {r.name for r in self.resources}
        states = written.get("files", {}) if isinstance(written, dict) else {}
        for name, path in self._index.items():
            if name not in desired and states.get(path, {}).get("kind") == "file":
                live[f"{self.target}/file/{name}"] = Live(GONE)
        return live

    def apply(self, changes: Sequence[Change], secrets: Secrets) -> dict[str, str]:
        assert self.ctx.transport is not None
        index = dict(self._index)
        writes: list[FileWrite] = []
        removes: list[str] = []
        for c in changes:
            if c.desired is None:
                path = index.pop(c.name, None)
                if path:
                    removes.append(path)
                continue
            svc = self.ctx.spec.services.get(c.desired.service or "")
            path = self._dest(c.desired)
            writes.append(FileWrite(path, c.desired.body.encode(),
                                    secret=bool(svc and svc.has_secrets)))
            index[c.name] = path
        if not (writes or removes):
            return {}
        if index != self._index or self._rewrite_index:
            writes.append(FileWrite(self.index_path(), json.dumps(
                index, indent=2, sort_keys=True).encode(), mode=0o600))
        try:
            self.ctx.transport.put_files(FileBatch(writes, removes, prune=True,
                                                   root=self._root()))
        except RemoteError as exc:
            return {c.id: exc.message for c in changes}
        self._index = index
        self._rewrite_index = False
        return {}

    def down(self) -> list[str]:
        """Remove the files blumeops wrote here (and only those) and the index. Two round
        trips: the index (with the host's facts, for absolute paths), then the removals."""
        transport = self.ctx.transport
        assert transport is not None
        facts, answer = transport.call({"op": "batch", "ops": [
            {"op": "observe"}, index_op(self.index_path())]})["results"]
        self.ctx.facts = parse_facts(sub_result(self.ctx.name, facts)["facts"])
        self.ctx.home = self.ctx.facts.home
        written = parse_index(answer)
        if not written:
            return []
        root = self._root()
        # Only under the lab dir: an index edited to name anything else (`lab/../x` too)
        # is not obeyed, and does not stop the removal of the rest.
        removes = sorted({n for p in written.values()
                          if (n := posixpath.normpath(p)).startswith(root + "/")})
        files, _ = put_request(FileBatch(removes=removes, root=root, prune=True))
        index, _ = put_request(FileBatch(removes=[self.index_path()],
                                         root=self.ctx.remote_path()))
        transport.call({"op": "batch", "ops": [files, index]})
        self._index = {}
        return []

    def _root(self) -> str:
        """The only tree a removal may touch: the host's lab dir (absolute)."""
        base = self._base()
        assert base is not None
        return base
