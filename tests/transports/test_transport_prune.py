"""`put` with `prune`: directories a removal leaves empty go, nothing else does.

Against the in-process agent and python3.9 (what a Mac ships), as the other agent tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import python39

from blumeops.transports.local import LocalTransport
from blumeops.transports.types import FileBatch


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    else:
        yield LocalTransport("here", python=python39())


def test_prune_removes_emptied_dirs_below_root_only(local: LocalTransport,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "lab"
    for rel in ("a/b/c/one.txt", "a/two.txt", "keep/x/three.txt", "four.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "keep" / "mine.txt").write_text("not blumeops's")
    removes = [str(root / p) for p in ("a/b/c/one.txt", "keep/x/three.txt", "four.txt")]
    result = local.call({"op": "put", "files": [], "removes": removes, "root": str(root),
                         "prune": True})
    assert sorted(result["pruned"]) == sorted(
        str(root / p) for p in ("a/b/c", "a/b", "keep/x"))
    assert (root / "a" / "two.txt").exists()  # a/ still holds a file: it stays
    assert (root / "keep" / "mine.txt").exists()
    assert root.is_dir()  # the root itself is never pruned, even when emptied
    # Without prune, emptied directories stay (as before).
    (root / "a" / "two.txt").unlink()
    (root / "q" / "r").mkdir(parents=True)
    (root / "q" / "r" / "s.txt").write_text("s")
    local.put_files(FileBatch(removes=[str(root / "q" / "r" / "s.txt")], root=str(root)))
    assert (root / "q" / "r").is_dir()
    assert sorted(os.listdir(root)) == ["a", "keep", "q"]


def test_prune_stops_at_the_root_even_when_everything_above_is_empty(
        local: LocalTransport, tmp_path: Path) -> None:
    """The root and the empty directories above it stay, when the root is reached by its
    own path or through a symlink."""
    outer = tmp_path / "outer" / "empty"
    root = outer / "lab"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "one.txt").write_text("1")
    result = local.call({"op": "put", "files": [], "removes": [str(root / "a/b/one.txt")],
                         "root": str(root), "prune": True})
    assert sorted(result["pruned"]) == sorted(str(root / p) for p in ("a/b", "a"))
    assert root.is_dir() and not any(root.iterdir())
    assert outer.is_dir()
    # The root given as a symlink to the lab, the removal by the lab's real path.
    (root / "c").mkdir()
    (root / "c" / "two.txt").write_text("2")
    link = tmp_path / "link"
    link.symlink_to(root)
    result = local.call({"op": "put", "files": [], "removes": [str(root / "c/two.txt")],
                         "root": str(link), "prune": True})
    assert result["pruned"] == [str(root / "c")]
    assert root.is_dir() and outer.is_dir()
