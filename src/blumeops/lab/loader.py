"""Load a lab: files and includes -> merged data -> typed model -> cross-layer rules.

Nothing here raises for bad input: every problem becomes a Diagnostic with a file, line
and column, and the caller decides what to do with them.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from glob import has_magic
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from blumeops.catalog.diagnostics import Diagnostic, Mark, Marks, did_you_mean, sort_key
from blumeops.catalog.model import Lab
from blumeops.catalog.paths import CatalogFiles, expand_include, inside, lab_dir, resolve_lab_path
from blumeops.catalog.values import control_characters, printable
from blumeops.lab import cache as catalog_cache
from blumeops.perf import gc_paused

MERGEABLE = ("hosts", "clusters", "domains", "services")
INCLUDABLE = (*MERGEABLE, "include")


@dataclass
class LoadResult:
    """A lab as loaded: the model when valid, and every problem found."""

    path: Path
    lab: Lab | None
    diagnostics: list[Diagnostic]
    marks: Marks
    files: CatalogFiles = field(default_factory=CatalogFiles)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.lab is not None and not self.errors


class _Includes:
    """Follows `include:` lists, merging named sections and catching cycles."""

    def __init__(self, marks: Marks, root_dir: Path) -> None:
        self.marks = marks
        self.root_dir = root_dir  # every catalog file lives below it
        self.diagnostics: list[Diagnostic] = []
        self.files = CatalogFiles()

    def load(self, path: Path, stack: tuple[Path, ...], root: dict[str, Any]) -> None:
        # lazy: keeps PyYAML out of start-up
        from blumeops.catalog.yamlfile import load_mapping

        local = Marks(Mark(str(path), 1, 1))
        data, problems = load_mapping(path, local)
        self.files.append(path)
        self.diagnostics.extend(problems)
        if stack:  # an included file: only mergeable sections
            for key in data:
                if key not in INCLUDABLE:
                    self.diagnostics.append(local.diag(
                        (key,), "unknown-key",
                        f"unknown key '{key}' in included file{did_you_mean(key, INCLUDABLE)}"
                        f" (an included file may hold: {', '.join(INCLUDABLE)})",
                    ))
            self._merge(root, data, local)
        includes = data.get("include", [])
        if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
            self.diagnostics.append(local.diag(
                ("include",), "schema", "'include' must be a list of file paths or globs"))
            return
        for i, pattern in enumerate(includes):
            self._include(path, pattern, local.find(("include", i)), (*stack, path.resolve()),
                          root)

    def _include(
        self, path: Path, pattern: str, where: Mark, stack: tuple[Path, ...], root: dict[str, Any]
    ) -> None:
        matches, problem = expand_include(path.parent, pattern, self.root_dir)
        if problem is not None:
            self.diagnostics.append(Diagnostic(where.file, where.line, where.col, *problem))
            return
        if has_magic(pattern):
            self.files.globs.append((str(path.parent), pattern, tuple(str(m) for m in matches)))
        if not matches or (not has_magic(pattern) and not matches[0].exists()):
            self.diagnostics.append(Diagnostic(
                where.file, where.line, where.col, "include",
                f"include '{pattern}' matches no file (looked in {path.parent})"))
            return
        for target in matches:
            if target.resolve() in stack:
                chain = " -> ".join(p.name for p in (*stack, target))
                self.diagnostics.append(Diagnostic(
                    where.file, where.line, where.col, "include-cycle",
                    f"include cycle: {chain}"))
                continue
            # lazy: keeps PyYAML out of start-up
            from blumeops.catalog.yamlfile import YamlError

            try:
                self.load(target, stack, root)
            except YamlError as exc:
                self.diagnostics.append(exc.diagnostic)

    def _merge(self, root: dict[str, Any], data: dict[str, Any], local: Marks) -> None:
        """Add an included file's named entries to the root's sections, marks and all."""
        accepted: set[tuple[str, str]] = set()
        for section in MERGEABLE:
            items = data.get(section)
            if items is None:
                continue
            if not isinstance(items, dict):
                self.diagnostics.append(local.diag(
                    (section,), "schema", f"'{section}' must be a mapping of names"))
                continue
            target = root.setdefault(section, {})
            if not isinstance(target, dict):
                continue
            for name, value in items.items():
                if name in target:
                    first = self.marks.find((section, name))
                    self.diagnostics.append(local.diag(
                        (section, name), "duplicate-name",
                        f"{section[:-1]} '{name}' is already defined at "
                        f"{first.file}:{first.line}"))
                    continue
                target[name] = value
                accepted.add((section, name))
        self.marks.copy_from(local, accepted)


def load_lab(lab: str | Path | None, strict: bool = False, cache: bool = False) -> LoadResult:
    """Load and check a lab; never raises for bad input.

    With `cache`, a lab whose files are unchanged since its last valid load is taken
    from the user's cache (see lab/cache.py) instead of parsed again.
    """
    path = resolve_lab_path(lab)
    if cache:
        kind = f"catalog:strict={strict}"
        hit = catalog_cache.lookup(kind, path)
        if hit is not None:
            model, diagnostics, files = hit
            return LoadResult(path, model, diagnostics, Marks(Mark(str(path), 1, 1)), files)
        result = load_lab(path, strict)
        if result.ok:
            catalog_cache.store(kind, path, result.files,
                                (result.lab, result.diagnostics, result.files))
        return result

    with gc_paused():
        return _load(path, strict)


def _load(path: Path, strict: bool) -> LoadResult:
    # Imported here: a cache hit needs no YAML parser at all.
    # lazy: keeps PyYAML out of start-up
    from blumeops.catalog.yamlfile import YamlError, load_mapping

    marks = Marks(Mark(str(path), 1, 1))
    includes = _Includes(marks, lab_dir(path))
    root: dict[str, Any] = {}
    if path.is_symlink() and not inside(path, lab_dir(path)):
        return LoadResult(path, None, [Diagnostic(
            str(path), 1, 1, "outside-lab", "the lab file is a symlink that leads outside its "
            "directory; keep the catalog inside the lab directory")], marks, includes.files)
    try:
        root, problems = load_mapping(path, marks)
        includes.diagnostics.extend(problems)
        includes.files.append(path)
        # Included files merge into the root's sections; the root is loaded first.
        includes_list = root.get("include", [])
        if isinstance(includes_list, list) and all(isinstance(i, str) for i in includes_list):
            for i, pattern in enumerate(includes_list):
                includes._include(path, pattern, marks.find(("include", i)), (path.resolve(),),
                                  root)
        elif "include" in root:
            includes.diagnostics.append(marks.diag(
                ("include",), "schema", "'include' must be a list of file paths or globs"))
    except YamlError as exc:
        return LoadResult(path, None, [exc.diagnostic], marks, includes.files)

    diagnostics = includes.diagnostics
    model: Lab | None = None
    try:
        model = Lab.model_validate(root)
    except ValidationError as exc:
        diagnostics.extend(_schema_diagnostics(exc, marks))

    # lazy: a catalog-cache hit runs no rule, so validate and a no-op apply never import
    # the rules nor the tailnet and Kubernetes modules they use
    from blumeops.catalog.confine import confined_paths
    from blumeops.lab.rules import check

    diagnostics.extend(control_characters(root, marks))
    if model is not None and not diagnostics:
        diagnostics.extend(check(model, marks))
        diagnostics.extend(confined_paths(model, marks, lab_dir(path)))
    if strict:
        diagnostics = [
            Diagnostic(d.file, d.line, d.col, d.rule, d.message, "error") for d in diagnostics
        ]
    # Messages quote catalog text: never let a control character in it reach a terminal,
    # a log line or the API raw.
    diagnostics = [d if printable(d.message) == d.message else
                   Diagnostic(d.file, d.line, d.col, d.rule, printable(d.message), d.severity)
                   for d in diagnostics]
    diagnostics.sort(key=sort_key)
    has_errors = any(d.severity == "error" for d in diagnostics)
    return LoadResult(path, None if has_errors else model, diagnostics, marks, includes.files)


def _schema_diagnostics(exc: ValidationError, marks: Marks) -> list[Diagnostic]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(err["loc"], marks)
        where = ".".join(str(p) for p in loc) or "top level"
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_at(loc[:-1])
            hint = did_you_mean(key, valid)
            expected = f" (expected one of: {', '.join(valid)})" if valid and not hint else ""
            parent = ".".join(str(p) for p in loc[:-1]) or "top level"
            out.append(marks.diag(loc, "unknown-key",
                                  f"unknown key '{key}' in {parent}{hint}{expected}"))
        elif kind == "missing":
            parent = ".".join(str(p) for p in loc[:-1]) or "top level"
            out.append(marks.diag(loc[:-1], "missing-key",
                                  f"missing required key '{loc[-1]}' in {parent}"))
        else:
            msg = _plain(err["msg"].removeprefix("Value error, "))
            if kind not in ("value_error", "assertion_error") and "input" in err:
                shown = err["input"]
                text = repr(shown) if not isinstance(shown, dict | list) else type(shown).__name__
                msg = f"{msg}, got {text[:80]}"
            out.append(marks.diag(loc, "schema", f"{where}: {msg}"))
    return out


_PHRASES = (
    ("Input should be a valid dictionary", "expected a mapping"),
    ("Input should be a valid list", "expected a list"),
    ("Input should be a valid string", "expected a string"),
    ("Input should be a valid integer", "expected an integer"),
    ("Input should be a valid boolean", "expected true or false"),
    ("String should match pattern", "expected text matching"),
    ("Input should be", "expected"),
)


def _plain(msg: str) -> str:
    """Pydantic's wording, said as what was expected."""
    for old, new in _PHRASES:
        if msg.startswith(old):
            return new + msg[len(old):]
    return msg


def _clean_loc(loc: tuple[str | int, ...], marks: Marks) -> tuple[str | int, ...]:
    """Drop pydantic's internal loc parts (union member names, validator tags)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part[:1].isupper()) and (
            (*out, part) not in marks
        ):
            continue
        out.append(part)
    return tuple(out)


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The valid keys of the model found at `loc`, for 'did you mean' hints."""
    current: Any = Lab
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        else:
            args = typing.get_args(current)
            origin = typing.get_origin(current)
            if origin is dict and len(args) == 2:
                current = args[1]
            elif origin is list and args:
                current = args[0]
            else:
                return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation
