"""`blumeops down` over real sshd removes the files it wrote on remote hosts, only those.

examples/multihost with `files:` on app: after `down`, every file blumeops recorded
writing there is gone, with the directories that leaves empty and the index itself;
a file the user put beside them, and so its directory, stay. An index edited to name
files outside the lab dir is not obeyed there, and does not stop the rest of `down`.
"""

from __future__ import annotations

import json

import pytest
from multihostlab import MultiLab, multihost_fixture, needs_sshd  # noqa: F401

pytestmark = [needs_sshd, pytest.mark.slow]


def test_down_removes_exactly_the_remote_files_blumeops_wrote(multihost: MultiLab) -> None:
    path = multihost.lab / "lab.yaml"
    text = path.read_text()
    anchor = "    depends_on: [store]\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + (
        "    files: {conf/site/a.txt: \"a\\n\", conf/b.txt: \"b\\n\", "
        "deep/er/c.txt: \"c\\n\", top.txt: \"top\\n\"}\n"), 1))
    # store holds a secret: its files may quote it, so only its user reads them.
    anchor = '    secrets: {STORE_TOKEN: "vault:multihost/store-token"}\n'
    text = path.read_text()
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + '    files: {store.ini: "s\\n"}\n', 1))
    multihost.cli("apply", "--yes", check=True)
    lab = multihost.remote_state("app") / "lab"
    written = [lab / "conf" / "site" / "a.txt", lab / "conf" / "b.txt",
               lab / "deep" / "er" / "c.txt", lab / "top.txt"]
    assert all(p.is_file() and p.stat().st_mode & 0o777 == 0o644 for p in written)
    store_ini = multihost.remote_state("data") / "lab" / "store.ini"
    assert store_ini.stat().st_mode & 0o777 == 0o600
    index = multihost.remote_state("app") / "files.json"
    assert index.is_file()
    # The user's own files: one beside blumeops's in conf/, one in a directory of theirs.
    (lab / "conf" / "mine.txt").write_text("the user's own\n")
    (lab / "notes").mkdir()
    (lab / "notes" / "todo.txt").write_text("mine too\n")
    # The index edited on the host to name files outside the lab dir.
    outside = [multihost.remote_state("app") / "precious.txt",
               multihost.host("app").root / "precious.txt"]
    for p in outside:
        p.write_text("not blumeops's\n")
    names = json.loads(index.read_text())
    names.update({f"x{i}": str(p) for i, p in enumerate(outside)})
    names["up"] = str(lab / ".." / "precious.txt")
    index.write_text(json.dumps(names))

    down = multihost.cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(p.exists() for p in written)
    assert not (lab / "conf" / "site").exists()  # emptied: removed
    assert not (lab / "deep").exists()  # deep/er, then deep
    assert (lab / "conf" / "mine.txt").read_text() == "the user's own\n"
    assert (lab / "notes" / "todo.txt").read_text() == "mine too\n"
    assert not index.exists()
    assert all(p.read_text() == "not blumeops's\n" for p in outside)
    assert not store_ini.exists()

    # Up again: everything comes back, as the catalog says.
    multihost.cli("apply", "--yes", check=True)
    assert all(p.is_file() for p in written)
