"""`blumeops render`: write every rendered resource under a directory, for review or git.

Writes are atomic (temp file + rename) and confined to --out; nothing is removed, so a
stale file from an older render stays until the user deletes it (the summary says which
files this render wrote).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from pathlib import Path

import click

from blumeops.commands.catalog import LAB_ARGUMENT, load_or_exit
from blumeops.output import OUTPUT_OPTION, emit_json, fail

# lazy: each command imports what it runs inside itself, so `blumeops --help` and
# every other command start without it.


def write_atomic(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it already holds exactly that; True if written."""
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@click.command()
@LAB_ARGUMENT
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="directory to write into (created if missing)")
@OUTPUT_OPTION
def render(lab: Path | None, out: Path, output: str) -> None:
    """Render every layer of a lab into files under --out."""
    from blumeops.render import RenderContext, render_lab
    from blumeops.render.caddy import caddy_requirements

    result = load_or_exit(lab)
    assert result.lab is not None
    lab_file = result.path.resolve()
    out_dir = out.resolve()
    sources = {p.resolve() for p in result.files} | {lab_file}

    resources = render_lab(result.lab, RenderContext(source=lab_file.name))
    planned: list[tuple[Path, str]] = []
    for res in resources:
        target = (out_dir / res.path).resolve()
        if not _inside(target, out_dir):
            fail(f"{res.id}: path {res.path!r} would leave {out}; nothing written")
        if target in sources:
            fail(f"--out {out} would overwrite the lab's own file {target}; "
                 "choose another directory")
        planned.append((target, res.body))

    changed = sum(write_atomic(path, body) for path, body in planned)
    needs = caddy_requirements(result.lab)
    if output == "json":
        emit_json({
            "out": str(out_dir),
            "written": [
                {"target": r.target, "kind": r.kind, "name": r.name, "path": r.path,
                 "sha256": hashlib.sha256(r.body.encode()).hexdigest()}
                for r in resources
            ],
            "changed": changed,
            "custom_caddy": needs,
        })
        return
    counts = Counter(r.path.split("/", 1)[0] for r in resources)
    click.echo(f"rendered {len(resources)} files into {out} ({changed} changed)")
    for top, n in sorted(counts.items()):
        click.echo(f"  {top + '/':<14} {n}")
    if needs:
        click.echo("custom Caddy build needed (stock Caddy lacks these modules):")
        for line in needs:
            click.echo(f"  - {line}")
