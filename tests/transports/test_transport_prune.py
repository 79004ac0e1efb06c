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
