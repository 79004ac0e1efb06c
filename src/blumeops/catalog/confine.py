"""Paths a catalog names for blumeops to write stay inside the lab directory.

A native service's `files:` and secret `file:` destinations are written relative to
its workdir (the lab directory by default): a malicious or careless catalog must not be able to
write `../../.bashrc` or `/etc/x`. Checked lexically (absolute, `..`) and on the real
file system (a symlink inside the lab directory that leads out of it), so this reads
the disk and runs in the loader, after the pure rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from blumeops.catalog.diagnostics import Diagnostic, Marks, Path_
from blumeops.catalog.model import Lab
from blumeops.catalog.paths import escapes, inside


def confined_paths(lab: Lab, marks: Marks, root: Path) -> list[Diagnostic]:
    return list(_problems(lab, marks, root))


def _problems(lab: Lab, marks: Marks, root: Path) -> Iterator[Diagnostic]:
    rule = "outside-lab"
    for name, svc in lab.services.items():
        if svc.manifests is not None:
            yield from _manifests_dir(marks, name, svc.manifests, root)
        if svc.native is None:
            continue  # a Kubernetes service's paths are inside its container
        at: Path_ = ("services", name)
        workdir = svc.workdir or ""
        base: Path | None = None  # where files are written; None when not in the lab dir
        if not workdir:
            base = root
        elif ".." in workdir.replace("\\", "/").split("/"):
            yield marks.diag((*at, "workdir"), rule, f"workdir {workdir!r} must not contain '..'")
        elif workdir.startswith("/"):
            pass  # fine for the process to run in; files cannot be written there (below)
        elif not inside(root / workdir, root):
            yield marks.diag((*at, "workdir"), rule,
                             f"workdir {workdir!r} leads outside the lab directory "
                             "through a symlink")
        else:
            base = root / workdir
        targets: list[tuple[Path_, str, str]] = [
            ((*at, "files", dest), dest, "file") for dest in svc.files]
        targets += [((*at, "secrets", key, "file"), ref.file, "secret file")
                    for key, ref in svc.secrets.items() if ref.file is not None]
        for path, dest, kind in targets:
            problem = escapes(dest) or (
                "must name a file (it names a directory)"
                if dest.endswith("/") or dest.rsplit("/", 1)[-1] in ("", ".") else None)
            if problem:
                yield marks.diag(path, rule, f"{kind} path {dest!r} {problem}")
            elif base is None and workdir.startswith("/"):
                yield marks.diag(path, rule,
                                 f"{kind} {dest!r} would be written in workdir {workdir!r}, "
                                 "outside the lab directory; blumeops writes files only "
                                 "inside it (use a relative workdir)")
            elif base is not None and not inside(base / dest, root):  # symlinks
                yield marks.diag(path, rule, f"{kind} path {dest!r} leads outside the lab "
                                 "directory through a symlink")
    if lab.controller is not None:
        problem = escapes(lab.controller.lab_path)
        if problem:
            yield marks.diag(("controller", "lab_path"), rule,
                             f"lab_path {lab.controller.lab_path!r} (inside the repository) "
                             f"{problem}")


def _manifests_dir(marks: Marks, name: str, directory: str, root: Path) -> Iterator[Diagnostic]:
    """A manifests directory (plain YAML or a kustomization) is read from the lab's own
    repository by ArgoCD: it must be a directory inside the lab directory."""
    path: Path_ = ("services", name, "manifests")
    problem = escapes(directory)
    if problem:
        yield marks.diag(path, "outside-lab", f"manifests directory {directory!r} {problem}")
    elif not inside(root / directory, root):
        yield marks.diag(path, "outside-lab", f"manifests directory {directory!r} leads "
                         "outside the lab directory through a symlink")
    elif not (root / directory).is_dir():
        yield marks.diag(path, "missing-manifests", f"manifests directory {directory!r} does "
                         "not exist beside the catalog")
