"""Catalog paths are confined to the lab directory; only small regular files are read.

A catalog may be someone else's commit: `include` must not read (and so echo into
diagnostics, which reach the API and the state database) files outside the lab
directory, must not hang on a FIFO or eat memory on /dev/zero, and `files:` must not
write outside it either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blumeops.catalog.paths import MAX_CATALOG_BYTES, MAX_INCLUDE_MATCHES
from blumeops.drivers.files import FilesDriver, PathEscape
from blumeops.lab.loader import load_lab
from conftest import load_data, write_lab

BASE = ("lab: t\nhosts:\n  a: {role: compute, os: linux, service_manager: supervisor}\n")
CANARY = "CANARY-outside-content-7f3a"
# Shaped so that the old loader, having read it, echoed it in a schema diagnostic.
OUTSIDE = f"services:\n  leak:\n    native: a\n    command: {CANARY}\n"


def lab_with_include(tmp_path: Path, *patterns: str) -> Path:
    lab = tmp_path / "lab"
    lab.mkdir(exist_ok=True)
    write_lab(lab, BASE + "include: [" + ", ".join(f"'{p}'" for p in patterns) + "]\n")
    return lab


def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "outside.yaml"
    path.write_text(OUTSIDE)
    return path


def errors_of(lab: Path) -> list[str]:
    result = load_lab(lab)
    assert result.lab is None
    text = [str(d) for d in result.diagnostics]
    assert not any(CANARY in line for line in text), text
    return text


def test_absolute_include_is_refused_and_not_read(tmp_path: Path) -> None:
    lab = lab_with_include(tmp_path, str(outside_file(tmp_path)))
    (d,) = load_lab(lab).errors
    assert (d.rule, d.line) == ("outside-lab", 4) and "not absolute" in d.message
    errors_of(lab)


def test_system_files_are_never_echoed(tmp_path: Path) -> None:
    lab = lab_with_include(tmp_path, "/etc/passwd", "/etc/shadow", "/*/*/*")
    result = load_lab(lab)
    assert [d.rule for d in result.errors] == ["outside-lab"] * 3
    secrets = [line for f in ("/etc/passwd", "/etc/shadow") if os.access(f, os.R_OK)
               for line in Path(f).read_text().splitlines() if line]
    text = "\n".join(str(d) for d in result.diagnostics)
    assert secrets and not any(line in text for line in secrets)
    assert "root:" not in text


def test_dotdot_include_is_refused(tmp_path: Path) -> None:
    outside_file(tmp_path)
    lab = lab_with_include(tmp_path, "../outside.yaml", "x/../../*.yaml")
    result = load_lab(lab)
    assert [d.rule for d in result.errors] == ["outside-lab", "outside-lab"]
    assert all("'..'" in d.message for d in result.errors)
    errors_of(lab)


def test_symlink_leading_outside_is_refused(tmp_path: Path) -> None:
    outside = outside_file(tmp_path)
    lab = lab_with_include(tmp_path, "link.yaml", "dir/*.yaml")
    (lab / "link.yaml").symlink_to(outside)
    (lab / "dir").symlink_to(tmp_path)  # a directory symlink: the glob would walk out
    result = load_lab(lab)
    assert [d.rule for d in result.errors] == ["outside-lab", "outside-lab"]
    assert "symlink" in result.errors[0].message
    errors_of(lab)
    # A symlink that stays inside the lab directory is fine.
    (lab / "link.yaml").unlink()
    (lab / "dir").unlink()
    (lab / "real.yaml").write_text("services:\n  w:\n    native: a\n    command: [x]\n")
    (lab / "link.yaml").symlink_to("real.yaml")
    write_lab(lab, BASE + "include: [link.yaml]\n")
    assert load_lab(lab).ok


def test_root_lab_file_symlinked_outside_is_refused(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "lab.yaml").symlink_to(outside_file(tmp_path))
    (d,) = load_lab(lab).errors
    assert d.rule == "outside-lab"
    errors_of(lab)


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    lab = lab_with_include(tmp_path, "pipe.yaml", "pipes/*.yaml")
    os.mkfifo(lab / "pipe.yaml")
    (lab / "pipes").mkdir()
    os.mkfifo(lab / "pipes" / "p.yaml")
    started = time.monotonic()
    result = load_lab(lab)
    assert time.monotonic() - started < 5
    assert [d.rule for d in result.errors] == ["file", "file"]
    assert all("not a regular file" in d.message for d in result.errors)


@pytest.mark.timeout(20)
def test_devices_and_directories_are_refused(tmp_path: Path) -> None:
    (d,) = load_lab(Path("/dev/zero")).errors  # as the lab file itself: never read
    assert d.rule == "file" and "not a regular file" in d.message
    lab = lab_with_include(tmp_path, "/dev/zero", "zero.yaml", "sub")
    (lab / "zero.yaml").symlink_to("/dev/zero")
    (lab / "sub").mkdir()
    result = load_lab(lab)
    assert sorted(d.rule for d in result.errors) == ["file", "outside-lab", "outside-lab"]
    assert any("is a directory" in d.message for d in result.errors)


@pytest.mark.timeout(60)
def test_huge_file_is_refused(tmp_path: Path) -> None:
    lab = lab_with_include(tmp_path, "big.yaml", "sparse.yaml")
    (lab / "big.yaml").write_text("# " + "x" * MAX_CATALOG_BYTES + "\n")
    with (lab / "sparse.yaml").open("wb") as handle:
        handle.truncate(8 * 1024**3)  # 8 GiB of holes: must not be read whole
    result = load_lab(lab)
    assert [d.rule for d in result.errors] == ["file", "file"]
    assert all("larger than 4 MiB" in d.message for d in result.errors)


@pytest.mark.timeout(60)
def test_globs_are_bounded(tmp_path: Path) -> None:
    lab = lab_with_include(tmp_path, "many/*.yaml")
    (lab / "many").mkdir()
    for i in range(MAX_INCLUDE_MATCHES + 1):
        (lab / "many" / f"{i}.yaml").write_text("hosts: {}\n")
    (d,) = load_lab(lab).errors
    assert d.rule == "include" and f"more than {MAX_INCLUDE_MATCHES}" in d.message


@pytest.mark.timeout(60)
def test_validate_cli_on_hostile_includes(tmp_path: Path) -> None:
    """The CLI: exit 1, a plain message per include, no traceback, no foreign content."""
    lab = lab_with_include(tmp_path, "/etc/shadow", "pipe.yaml", "/*/*/*", "../*")
    os.mkfifo(lab / "pipe.yaml")
    proc = subprocess.run([sys.executable, "-m", "blumeops", "validate", str(lab)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "root:" not in proc.stderr
    assert proc.stderr.count("[outside-lab]") == 3 and "[file]" in proc.stderr


# --- files: and workdir ---------------------------------------------------------------


def service(**fields: str | dict[str, str]) -> str:
    lines = ["services:", "  web:", "    native: a", "    command: [x]"]
    for key, value in fields.items():
        if isinstance(value, dict):
            inner = ", ".join(f"'{k}': '{v}'" for k, v in value.items())
            lines.append(f"    {key}: {{{inner}}}")
        else:
            lines.append(f"    {key}: '{value}'")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("fields", "message", "line"), [
    ({"files": {"../../x": "y"}}, "must not contain '..'", 8),
    ({"files": {"/etc/x": "y"}}, "not absolute", 8),
    ({"files": {"a/../../x": "y"}}, "must not contain '..'", 8),
    ({"workdir": "../elsewhere"}, "must not contain '..'", 8),
    ({"workdir": "/srv/app", "files": {"app.ini": "y"}}, "outside the lab directory", 9),
    ({"files": {"conf/": "y"}}, "must name a file", 8),
    ({"files": {".": "y"}}, "must name a file", 8),
    ({"secrets": {"K": "vault:k"}}, None, 0),
])
def test_files_must_stay_in_the_lab_dir(tmp_path: Path, fields: dict[str, str | dict[str, str]],
                                        message: str | None, line: int) -> None:
    result = load_data(tmp_path, BASE + service(**fields))
    if message is None:
        assert result.ok, [str(d) for d in result.diagnostics]
        return
    (d,) = result.errors
    assert d.rule == "outside-lab" and message in d.message and d.line == line


def test_files_through_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "conf").symlink_to(tmp_path)
    result = load_data(tmp_path / "lab", BASE + service(files={"conf/x.ini": "y"}))
    (d,) = result.errors
    assert d.rule == "outside-lab" and "symlink" in d.message
    result = load_data(tmp_path / "lab", BASE + service(workdir="conf"))
    (d,) = result.errors
    assert d.rule == "outside-lab" and "workdir" in d.message


def test_secret_file_outside(tmp_path: Path) -> None:
    text = BASE + service() + "    secrets: {K: {ref: 'vault:k', file: '../k.pem'}}\n"
    (d,) = load_data(tmp_path, text).errors
    assert d.rule == "outside-lab" and "secret file" in d.message and d.line == 8


def test_absolute_workdir_alone_is_allowed(tmp_path: Path) -> None:
    # The process may run anywhere (the example lab's forgejo does): blumeops writes nothing there.
    assert load_data(tmp_path, BASE + service(workdir="/opt/app")).ok


def test_files_driver_refuses_to_write_outside(tmp_path: Path) -> None:
    """Defence in depth: even a catalog that skipped validate cannot write outside."""
    lab, state = tmp_path / "lab", tmp_path / "state"
    lab.mkdir()
    state.mkdir()
    (lab / "out").symlink_to(tmp_path)
    driver = FilesDriver(state, lab)
    assert driver.resolve("conf/a.ini", None) == lab.resolve() / "conf" / "a.ini"
    for dest, workdir in (("../x", None), ("/tmp/x", None), ("x", "/etc"), ("out/x", None),
                          ("x", "../..")):
        with pytest.raises(PathEscape):
            driver.resolve(dest, workdir)
    errors = driver.apply({"w:x": (tmp_path / "x", "evil", False),
                           "w:ok": (lab / "ok.txt", "fine", False)}, [])
    assert list(errors) == ["w:x"] and "outside the lab directory" in errors["w:x"]
    assert not (tmp_path / "x").exists() and (lab / "ok.txt").read_text() == "fine"
