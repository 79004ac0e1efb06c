"""Problems found in a catalog, each pinned to a file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Set
from dataclasses import asdict, dataclass
from typing import Any, Literal

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    file: str
    line: int
    col: int


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    col: int
    rule: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}:{self.col}: {tag}{self.message} [{self.rule}]"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Marks:
    """Where each value of the merged catalog came from, keyed by its path."""

    def __init__(self, default: Mark) -> None:
        self.default = default
        self._marks: dict[Path_, Mark] = {}

    def set(self, path: Path_, mark: Mark) -> None:
        self._marks[path] = mark

    def get(self, path: Path_) -> Mark | None:
        return self._marks.get(path)

    def __contains__(self, path: Path_) -> bool:
        return path in self._marks

    def update(self, other: Marks) -> None:
        """Take every mark of `other` (a file's marks, into the lab's)."""
        self._marks.update(other._marks)

    def copy_from(self, other: Marks, entries: Set[tuple[str, str]]) -> None:
        """Take `other`'s marks for the given (section, name) entries and below them."""
        for path, mark in other._marks.items():
            if path[:2] in entries:
                self._marks[path] = mark

    def find(self, path: Iterable[str | int]) -> Mark:
        """The mark of the deepest known prefix of `path`."""
        parts = tuple(path)
        for end in range(len(parts), 0, -1):
            mark = self._marks.get(parts[:end])
            if mark is not None:
                return mark
        return self.default

    def diag(
        self,
        path: Iterable[str | int],
        rule: str,
        message: str,
        severity: Literal["error", "warning"] = "error",
    ) -> Diagnostic:
        mark = self.find(path)
        return Diagnostic(mark.file, mark.line, mark.col, rule, message, severity)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' when a close match exists, else ''."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """"unknown KIND 'NAME'" with a did-you-mean: how every rule names a bad reference."""
    return f"unknown {kind} '{name}'{did_you_mean(name, known)}"


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file, d.line, d.col, d.message)
