"""Read one YAML file into plain data, remembering where every key and item stood.

libyaml (through PyYAML's C loader) builds the node tree; we turn nodes into dicts and
lists ourselves so each value keeps its line and column, duplicate keys are caught (PyYAML
silently keeps the last), and keys stay the strings the user typed (YAML 1.1 would read
a key `on:` as True).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from blumeops.catalog.diagnostics import Diagnostic, Mark, Marks, Path_
from blumeops.catalog.paths import MAX_CATALOG_BYTES

MAX_NODES = 2_000_000  # values in one file, as built
MAX_ALIAS_NODES = 100_000  # values aliases (*name) may add to a file: more is a bomb

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _error(file: str, line: int, col: int, message: str, rule: str = "yaml") -> YamlError:
    return YamlError(Diagnostic(file, line, col, rule, message))


def read_text(path: Path) -> str:
    """The file's text, or a YamlError saying plainly why it cannot be read.

    Only regular files are read (a FIFO would block, /dev/zero never ends), opened
    without blocking and read no further than MAX_CATALOG_BYTES.
    """
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _error(name, 1, 1, "file not found", "file") from None
    except IsADirectoryError:
        raise _error(name, 1, 1, "is a directory, expected a YAML file", "file") from None
    except OSError as exc:
        raise _error(name, 1, 1, f"cannot read file: {exc.strerror}", "file") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _error(name, 1, 1, "is a directory, expected a YAML file", "file")
        if not stat.S_ISREG(mode):
            raise _error(name, 1, 1, "not a regular file (a device, FIFO or socket); "
                         "a catalog file must be a plain file", "file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CATALOG_BYTES + 1)
    except OSError as exc:
        raise _error(name, 1, 1, f"cannot read file: {exc.strerror}", "file") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_CATALOG_BYTES:
        raise _error(name, 1, 1, f"file is larger than {MAX_CATALOG_BYTES // (1024 * 1024)} MiB "
                     "(the limit for one catalog file); split it with 'include'", "file")
    if b"\x00" in raw:
        raise _error(name, 1, 1, "not a text file (contains NUL bytes)", "file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _error(name, line, 1, f"not UTF-8 text (bad byte at offset {exc.start})") from None


class _Builder:
    def __init__(self, file: str, marks: Marks, base: Path_) -> None:
        self.file = file
        self.marks = marks
        self.base = base
        self.constructor = SafeConstructor()
        self.count = 0
        self.errors: list[Diagnostic] = []

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _check_duplicates(self, node: yaml.MappingNode) -> None:
        """Report keys written twice in one mapping (merge keys `<<:` excepted)."""
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = str(key_node.value)
            m = self.mark(key_node)
            if key in first:
                self.errors.append(Diagnostic(m.file, m.line, m.col, "duplicate-key",
                                              f"duplicate key '{key}' (first at line "
                                              f"{first[key]})"))
            else:
                first[key] = m.line

    def build(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES or depth > 200:
            m = self.mark(node)
            raise _error(self.file, m.line, m.col, "document too large or too deeply nested")
        if isinstance(node, yaml.MappingNode):
            self._check_duplicates(node)
            try:
                self.constructor.flatten_mapping(node)  # `<<:` merge keys
            except ConstructorError as exc:
                raise _from_yaml_error(self.file, exc) from None
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    m = self.mark(key_node)
                    self.errors.append(
                        Diagnostic(m.file, m.line, m.col, "yaml", "keys must be plain names")
                    )
                    continue
                key = str(key_node.value)
                kpath = (*path, key)
                # Later pairs win: explicit keys override those merged in with `<<:`.
                self.marks.set((*self.base, *kpath), self.mark(key_node))
                out[key] = self.build(value_node, kpath, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.marks.set((*self.base, *path, i), self.mark(item))
                items.append(self.build(item, (*path, i), depth + 1))
            return items
        try:
            return self.constructor.construct_object(node)
        except ConstructorError as exc:
            raise _from_yaml_error(self.file, exc) from None
        except ValueError as exc:  # e.g. a timestamp out of range
            m = self.mark(node)
            raise _error(self.file, m.line, m.col, f"bad value: {exc}") from None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_aliases(file: str, root: yaml.Node) -> None:
    """Refuse an alias bomb before anything is built: count the values the document
    would expand to, each shared node once (the node tree is a graph; aliases are its
    shared edges), so this costs the size of what was written, not of the expansion."""
    sizes: dict[int, int] = {}  # id(node) -> expanded values; -1 while being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        if counted:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in _children(node))
            continue
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        stack.append((node, True))
        for child in _children(node):
            if sizes.get(id(child)) == -1:
                m = child.start_mark
                raise _error(file, m.line + 1, m.column + 1,
                             "a YAML alias refers to a value that contains it")
            if id(child) not in sizes:
                stack.append((child, False))
    written, expanded = len(sizes), sizes[id(root)]
    if expanded - written > MAX_ALIAS_NODES:
        m = root.start_mark
        raise _error(file, m.line + 1, m.column + 1,
                     f"YAML aliases (*name) expand this file by more than {MAX_ALIAS_NODES} "
                     f"values ({written} written): refused as an alias bomb")


def _from_yaml_error(file: str, exc: yaml.YAMLError) -> YamlError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context else str(problem)
    return _error(file, line, col, f"malformed YAML: {text}")


# Files parsed in this process, by path and content: a controller that syncs commit after
# commit parses again only the files a commit changed.
_PARSED: OrderedDict[tuple[str, str], tuple[dict[str, Any], Marks, list[Diagnostic]]] = (
    OrderedDict())
_PARSED_MAX = 512


def load_mapping(path: Path, marks: Marks) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Load a file that must hold one mapping, adding where each value stood to `marks`.

    Returns a copy the caller may change (two levels deep: the loader merges sections).
    """
    name = str(path)
    text = read_text(path)
    key = (name, hashlib.sha256(text.encode()).hexdigest())
    cached = _PARSED.get(key)
    if cached is None:
        cached = _parse(name, text)
        _PARSED[key] = cached
        if len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(key)
    data, file_marks, errors = cached
    marks.update(file_marks)
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}, list(errors)


def _parse(name: str, text: str) -> tuple[dict[str, Any], Marks, list[Diagnostic]]:
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _from_yaml_error(name, exc) from None
    if node is None:
        raise _error(name, 1, 1, "file is empty; expected a mapping such as 'lab: NAME'")
    check_aliases(name, node)
    marks = Marks(Mark(name, 1, 1))
    builder = _Builder(name, marks, ())
    data = builder.build(node, ())
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", int: "a number", float: "a number",
                bool: "a boolean"}.get(type(data), f"a {type(data).__name__}")
        m = builder.mark(node)
        raise _error(name, m.line, m.col, f"expected a mapping of keys to values, got {kind}")
    return data, marks, builder.errors
