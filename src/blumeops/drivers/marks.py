"""What each program's running process was started with, so a lost restart shows.

Writing a program (and its secrets) and restarting it are two steps, and a dropped
connection or a crash between them leaves the old process running with the new files
on disk. Two small marks per program, in its supervisor dir, make that visible:

    marks/NAME.written   the configuration on disk: written before the files
    marks/NAME.started   the configuration the process was started with: written only
                         after supervisord accepted the (re)start

They differ exactly while a restart is owed; plan shows it and the next apply does it.
A mark is a hash of the program's body and the keyed fingerprint of its secret values
(secrets/fingerprint.py): it reveals neither. A program without a `written` mark (applied
before marks existed) is taken as started with what is on disk.
"""

from __future__ import annotations

import hashlib

WRITTEN = ".written"
STARTED = ".started"
PENDING = ("its process was started with an older configuration than the one written "
           "(a restart did not happen)")


def config_mark(body: str, secrets_fp: str) -> str:
    """The mark of a program body plus its secrets' keyed fingerprint ("" for none)."""
    body_sha = hashlib.sha256(body.encode()).hexdigest()
    return hashlib.sha256(f"{body_sha}\n{secrets_fp}".encode()).hexdigest() + "\n"


def restart_pending(written: str | None, started: str | None) -> str:
    """Why a restart is owed ("" when none): the two marks (or their hashes) differ."""
    if written is None or written == started:
        return ""
    return PENDING
