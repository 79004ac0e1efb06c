"""A stand-in for a Kubernetes API server on 127.0.0.1 (no real one can run here). It plays
the part of the documented REST API that blumeops's lightkube calls use, and no more:

- GET    /api/v1/..., /apis/GROUP/VERSION/...   an object, or 404 with a `Status`
- GET    a collection (namespaced, all namespaces, or cluster-wide), `labelSelector`
         of `k=v` terms filtering it, as a `...List`
- PATCH  with `Content-Type: application/apply-patch+yaml` (server-side apply): needs
         `fieldManager`; `dryRun=All` answers what would be stored and stores nothing
- DELETE an object
- the CustomResourceDefinitions list, so lightkube learns argoproj.io's Application

It is not Kubernetes: apply replaces the manager's whole object (one field manager owns
every field), adds the fields a real server fills in (uid, resourceVersion,
creationTimestamp, managedFields, generation, a Deployment's `revisionHistoryLimit` and
`strategy` defaults) and keeps `status`, which only tests set (status objects as the
Kubernetes and ArgoCD documentation show them). A namespaced object in a namespace that
does not exist is refused (404), as the real server does. Every request needs
`Authorization: Bearer TOKEN`; every request is recorded for the tests to assert on.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

Doc = dict[str, Any]
Key = tuple[str, str, str, str]  # group, plural, namespace ('' if cluster-wide), name

APPLICATION_CRD: Doc = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {"group": "argoproj.io", "scope": "Namespaced",
             "names": {"kind": "Application", "listKind": "ApplicationList",
                       "plural": "applications", "singular": "application"},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object"}}}]},
}
CLUSTER_WIDE = {"namespaces", "customresourcedefinitions", "clusterroles",
                "clustersecretstores", "persistentvolumes"}


def plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("s"):
        return low + "es"
    if low.endswith("y"):
        return low[:-1] + "ies"
    return low + "s"


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


@dataclass
class KubeStandIn:
    token: str
    objects: dict[Key, Doc] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    version: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, doc: Doc) -> Doc:
        """Store an object as a test (or another tool) made it, status and all."""
        doc = copy.deepcopy(doc)
        meta = doc.setdefault("metadata", {})
        ns = meta.get("namespace") or ""
        key = (_group(doc["apiVersion"]), plural(doc["kind"]), ns, meta["name"])
        status = doc.get("status")
        self._server_fields(doc, self.objects.get(key))
        if status is not None:  # the test's status, not the stored one
            doc["status"] = status
        self.objects[key] = doc
        return doc

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> Doc | None:
        return self.objects.get((_group(api_version), plural(kind), namespace, name))

    def set_status(self, api_version: str, kind: str, name: str, namespace: str,
                   status: Doc, generation: int | None = None) -> None:
        doc = self.get(api_version, kind, name, namespace)
        assert doc is not None, (kind, namespace, name)
        doc["status"] = copy.deepcopy(status)
        if generation is not None:
            doc["metadata"]["generation"] = generation

    def writes(self) -> list[dict[str, Any]]:
        """Requests that changed something (not dry runs, not reads)."""
        return [r for r in self.requests if r["method"] in ("PATCH", "DELETE", "POST", "PUT")
                and r["query"].get("dryRun") != "All"]

    def _server_fields(self, doc: Doc, old: Doc | None) -> None:
        meta = doc["metadata"]
        self.version += 1
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
        meta["resourceVersion"] = str(self.version)
        meta["creationTimestamp"] = (old or {}).get("metadata", {}).get(
            "creationTimestamp") or "2026-11-27T12:00:00Z"
        spec_changed = old is None or old.get("spec") != doc.get("spec")
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        meta["generation"] = generation + 1 if spec_changed else generation
        meta["managedFields"] = [{"manager": "blumeops", "operation": "Apply",
                                  "apiVersion": doc["apiVersion"]}]
        if doc.get("kind") == "Deployment":  # defaults the API server fills in
            spec = doc.setdefault("spec", {})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": "25%", "maxUnavailable": "25%"}})
        if old is not None and "status" in old:
            doc["status"] = old["status"]


def _status(code: int, reason: str, message: str) -> Doc:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _parse(path: str) -> tuple[str, str, list[str]] | None:
    """(group, version, the rest) of an API path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        return "", parts[1], parts[2:]
    if parts[:1] == ["apis"] and len(parts) >= 3:
        return parts[1], parts[2], parts[3:]
    return None


def _matches(doc: Doc, selector: str) -> bool:
    labels = doc.get("metadata", {}).get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _handler(api: KubeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Doc) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _start(self) -> tuple[Doc | None, dict[str, str], tuple[str, str, list[str]] | None]:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            body = yaml.safe_load(raw) if raw else None
            api.requests.append({"method": self.command, "path": url.path, "query": query,
                                 "content_type": self.headers.get("Content-Type", ""),
                                 "body": body})
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self._reply(401, _status(401, "Unauthorized", "Unauthorized"))
                return None, query, None
            parsed = _parse(url.path)
            if parsed is None:
                self._reply(404, _status(404, "NotFound", f"no API at {url.path}"))
            return body, query, parsed

        def _where(self, rest: list[str]) -> tuple[str, str, str | None] | None:
            """(plural, namespace, name or None for a collection)."""
            if len(rest) == 1:
                return rest[0], "", None
            if len(rest) == 2:
                return rest[0], "", rest[1]
            if len(rest) == 3 and rest[0] == "namespaces":
                return rest[2], rest[1], None
            if len(rest) == 4 and rest[0] == "namespaces":
                return rest[2], rest[1], rest[3]
            return None

        def do_GET(self) -> None:
            _, query, parsed = self._start()
            if parsed is None:
                return
            group, version, rest = parsed
            where = self._where(rest)
            if where is None:
                self._reply(404, _status(404, "NotFound", "unknown path"))
                return
            plural_, ns, name = where
            with api.lock:
                if name is not None:
                    doc = api.objects.get((group, plural_, ns, name))
                    if doc is None:
                        self._reply(404, _status(404, "NotFound",
                                                 f'{plural_} "{name}" not found'))
                    else:
                        self._reply(200, doc)
                    return
                if (group, plural_) == ("apiextensions.k8s.io", "customresourcedefinitions"):
                    items = [APPLICATION_CRD]
                else:
                    items = [d for (g, p, n, _), d in sorted(api.objects.items())
                             if g == group and p == plural_ and (not ns or n == ns)
                             and _matches(d, query.get("labelSelector", ""))]
                kind = (items[0]["kind"] if items else plural_.capitalize()) + "List"
                self._reply(200, {"apiVersion": f"{group}/{version}" if group else version,
                                  "kind": kind, "metadata": {"resourceVersion":
                                                             str(api.version)},
                                  "items": items})

        def do_PATCH(self) -> None:
            body, query, parsed = self._start()
            if parsed is None:
                return
            group, _, rest = parsed
            where = self._where(rest)
            if (where is None or where[2] is None or not isinstance(body, dict)
                    or self.headers.get("Content-Type") != "application/apply-patch+yaml"):
                self._reply(415, _status(415, "UnsupportedMediaType",
                                         "only server-side apply is played here"))
                return
            if not query.get("fieldManager"):
                self._reply(422, _status(422, "Invalid", "fieldManager is required for apply "
                                                         "patch"))
                return
            plural_, ns, name = where
            with api.lock:
                if ns and ("", "namespaces", "", ns) not in api.objects:
                    self._reply(404, _status(404, "NotFound", f'namespaces "{ns}" not found'))
                    return
                key = (group, plural_, ns, name)
                doc = copy.deepcopy(body)
                doc.setdefault("metadata", {})
                if ns:
                    doc["metadata"]["namespace"] = ns
                old = api.objects.get(key)
                saved_version = api.version
                api._server_fields(doc, old)
                if query.get("dryRun") == "All":
                    api.version = saved_version
                else:
                    api.objects[key] = doc
                self._reply(201 if old is None else 200, doc)

        def do_DELETE(self) -> None:
            _, _query, parsed = self._start()
            if parsed is None:
                return
            group, _, rest = parsed
            where = self._where(rest)
            if where is None or where[2] is None:
                self._reply(405, _status(405, "MethodNotAllowed", "delete one object"))
                return
            plural_, ns, name = where
            with api.lock:
                doc = api.objects.pop((group, plural_, ns, name), None)
                if plural_ == "namespaces" and doc is not None:
                    for key in [k for k in api.objects if k[2] == name]:
                        del api.objects[key]
            if doc is None:
                self._reply(404, _status(404, "NotFound", f'{plural_} "{name}" not found'))
            else:
                self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                  "metadata": {}})

    return Handler


def kubeconfig(path: Path, url: str, token: str, context: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
        "users": [{"name": "stand-in", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "stand-in",
                                                   "user": "stand-in"}}],
    }))
    return path


@contextmanager
def kube_stand_in(token: str) -> Iterator[KubeStandIn]:
    api = KubeStandIn(token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
