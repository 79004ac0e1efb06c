"""The agent keeps writes and its indexes inside the lab dir, as the local driver does.

Against the in-process agent and python3.9 (what a Mac ships), as the other agent tests;
the drivers' use of it over real sshd is in tests/engine/test_multihost_confine.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshhost import PY39

from blumeops.transports.exceptions import RemoteError
from blumeops.transports.local import LocalTransport
from blumeops.transports.types import FileBatch, FileWrite


@pytest.fixture(params=["in-process", "python3.9"])
def local(request: pytest.FixtureRequest) -> Iterator[LocalTransport]:
    if request.param == "in-process":
        yield LocalTransport("here")
    elif PY39 is None:
        pytest.skip("needs pyenv python3.9")
    else:
        yield LocalTransport("here", python=PY39)


def test_a_write_through_a_symlinked_dir_out_of_root_is_refused_whole(
        local: LocalTransport, tmp_path: Path) -> None:
    root, outside = tmp_path / "lab", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    (root / "inner").mkdir()
    (root / "in").symlink_to(root / "inner")  # a symlink that stays inside is fine
    state = tmp_path / "state" / "files.json"  # named outside root: not confined by it
    batch = FileBatch([FileWrite(str(root / "ok.txt"), b"ok"),
                       FileWrite(str(root / "out" / "deep" / "evil.txt"), b"x"),
                       FileWrite(str(state), b"{}")], root=str(root))
    with pytest.raises(RemoteError) as caught:
        local.put_files(batch)
    assert caught.value.code == "outside-root"
    assert "leads outside" in caught.value.message and "through a symlink" in \
        caught.value.message
    assert list(outside.iterdir()) == [] and not (root / "ok.txt").exists()  # nothing
    assert not state.exists()
    local.put_files(FileBatch([FileWrite(str(root / "in" / "x.txt"), b"x"),
                               FileWrite(str(state), b"{}")], root=str(root)))
    assert (root / "inner" / "x.txt").read_bytes() == b"x" and state.exists()


@pytest.mark.parametrize("text", ["{not json", "[]", '{"a": 5}', '{"a": "relative/x"}',
                                  '{"a": "/x/../etc/passwd"}'])
def test_a_damaged_index_says_so(local: LocalTransport, tmp_path: Path, text: str) -> None:
    index = tmp_path / "files.json"
    index.write_text(text)
    got = local.call({"op": "index", "path": str(index), "stat": True})
    assert got["damaged"] is True and got["entries"] == {}
    index.unlink()  # no index yet: nothing was written, nothing is damaged
    assert local.call({"op": "index", "path": str(index)})["damaged"] is False


def test_index_entries_outside_root_are_left_out(local: LocalTransport,
                                                 tmp_path: Path) -> None:
    root = tmp_path / "lab"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    outside = tmp_path / "precious.txt"
    outside.write_text("not blumeops's")
    (root / "link").symlink_to(tmp_path)
    index = tmp_path / "files.json"
    index.write_text(json.dumps({"a": str(root / "sub" / "a.txt"), "b": str(outside),
                                 "c": str(root / "link" / "precious.txt"), "d": str(root)}))
    got = local.call({"op": "index", "path": str(index), "stat": True, "root": str(root)})
    assert got["entries"] == {"a": str(root / "sub" / "a.txt")}
    assert sorted(got["outside"]) == ["b", "c", "d"]
    assert list(got["files"]) == [str(root / "sub" / "a.txt")]  # never stats outside
    assert got["damaged"] is False


def test_index_entries_under_home_are_kept(local: LocalTransport, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit host's index names `~/...` paths (its lab dir before the home is known)."""
    home = tmp_path / "home"
    (home / "lab").mkdir(parents=True)
    (home / "lab" / "a.key").write_text("x")
    monkeypatch.setenv("HOME", str(home))
    index = tmp_path / "files.json"
    index.write_text(json.dumps({"svc:A": "~/lab/a.key", "svc:B": "~/elsewhere.key"}))
    got = local.call({"op": "index", "path": str(index), "stat": True, "root": "~/lab"})
    assert got["entries"] == {"svc:A": "~/lab/a.key"} and got["damaged"] is False
    assert got["outside"] == {"svc:B": "~/elsewhere.key"}
    assert got["files"]["~/lab/a.key"]["kind"] == "file"
