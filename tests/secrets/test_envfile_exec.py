"""The env file the supervisor driver writes, and the exec wrapper that reads it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from blumeops.secrets.envfile import EnvFileError, read_env_file, write_env_file


def test_env_file_round_trip_and_modes(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "api.env"
    write_env_file(path, {"API_TOKEN": "t0k\n'\"x", "B": ""})
    assert read_env_file(path) == {"API_TOKEN": "t0k\n'\"x", "B": ""}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    write_env_file(path, {"A": "1"})  # replaces, and stays 0600
    assert read_env_file(path) == {"A": "1"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["api.env"]  # no temp left over


def test_env_file_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_env_file(tmp_path / "s" / "x.env", {"A": "1"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s" / "x.env").stat().st_mode) == 0o600


@pytest.mark.parametrize("text", ["not json", "[1]", '{"A": 1}'])
def test_env_file_bad(tmp_path: Path, text: str) -> None:
    path = tmp_path / "x.env"
    path.write_text(text)
    with pytest.raises(EnvFileError):
        read_env_file(path)


def _wrapper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blumeops.secrets.exec", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_exec_runs_command_with_env(tmp_path: Path) -> None:
    envfile = tmp_path / "secrets" / "api.env"
    write_env_file(envfile, {"API_TOKEN": "from-the-file"})
    code = "import os, sys; print(os.environ['API_TOKEN']); sys.exit(3)"
    proc = _wrapper(str(envfile), "--", sys.executable, "-c", code)
    assert proc.stdout.strip() == "from-the-file"
    assert proc.returncode == 3  # the exit code passes straight through
    assert "from-the-file" not in " ".join(proc.args)  # never in argv


def test_exec_replaces_the_process(tmp_path: Path) -> None:
    envfile = tmp_path / "a.env"
    write_env_file(envfile, {"X": "1"})
    code = "import os; print(os.getpid())"
    proc = subprocess.Popen([sys.executable, "-m", "blumeops.secrets.exec", str(envfile), "--",
                             sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert int(out) == proc.pid  # exec, not a child: supervisord's process is the service


def test_exec_command_not_found(tmp_path: Path) -> None:
    envfile = tmp_path / "a.env"
    write_env_file(envfile, {"X": "1"})
    proc = _wrapper(str(envfile), "--", "no-such-command-blumeops")
    assert proc.returncode == 127
    assert "command not found" in proc.stderr


def test_exec_env_file_unreadable(tmp_path: Path) -> None:
    proc = _wrapper(str(tmp_path / "missing.env"), "--", "true")
    assert proc.returncode == 1
    assert "missing.env" in proc.stderr


def test_exec_usage() -> None:
    proc = _wrapper("only-one")
    assert proc.returncode == 2 and "usage" in proc.stderr


# Under umask 0, with every chmod disabled: a file opened wider and narrowed after
# (open 0644, write, chmod 0600) ends 0644 here. Modes are also taken just before the
# rename, when the value is already written to the temporary file.
_BORN_0600 = """
import json, os, stat, sys
from pathlib import Path

path = Path(sys.argv[1])
os.umask(0)
seen = []

def snapshot(real):
    def wrapper(src, dst, *args, **kwargs):
        for p in Path(src).parent.iterdir():
            if p.is_file():
                seen.append([p.name, stat.S_IMODE(p.stat().st_mode), p.read_bytes().decode()])
        return real(src, dst, *args, **kwargs)
    return wrapper

os.replace = snapshot(os.replace)
os.rename = snapshot(os.rename)
os.chmod = os.fchmod = os.lchmod = lambda *args, **kwargs: None
Path.chmod = lambda *args, **kwargs: None

from blumeops.secrets.envfile import write_env_file

write_env_file(path, {"API_TOKEN": "umask-zero-value"})
print(json.dumps({"seen": seen, "final": stat.S_IMODE(path.stat().st_mode),
                  "dir": stat.S_IMODE(path.parent.stat().st_mode)}))
"""


def test_env_file_is_born_0600_under_umask_0(tmp_path: Path) -> None:
    import json

    path = tmp_path / "secrets" / "api.env"
    proc = subprocess.run([sys.executable, "-c", _BORN_0600, str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["final"] == 0o600
    assert result["dir"] == 0o700
    # Before the rename the value sat in a temporary file: 0600 already.
    holding = [entry for entry in result["seen"] if "umask-zero-value" in entry[2]]
    assert holding, result["seen"]
    assert {mode for _, mode, _ in holding} == {0o600}, result["seen"]
    assert read_env_file(path) == {"API_TOKEN": "umask-zero-value"}
