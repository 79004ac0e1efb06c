"""The redactor masks a secret however text quotes it: whole, one line of a multi-line
value, or JSON-escaped."""

from __future__ import annotations

import json

from blumeops.secrets.redact import MASK, Redactor

KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
       "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz\n"
       "c2gtZWQyNTUxOQAAACDpQX0ZzwR1n6mJ3Zk2xY5WQm8l5V2zD3cY6j9mQe4uVwAA\n"
       "-----END OPENSSH PRIVATE KEY-----\n")
PASSWORD = 'pa"ss\\wörd-hunter2'


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    redact = Redactor([KEY])
    line = KEY.splitlines()[2]
    shown = redact(f"sshd: bad key line {line} at offset 70")
    assert line not in shown and MASK in shown
    assert redact("a short line: -----\n") == "a short line: -----\n"  # trivial: kept


def test_json_escaped_secrets_are_masked() -> None:
    redact = Redactor([KEY, PASSWORD])
    for doc in ({"key": KEY}, {"password": PASSWORD}):
        for ascii_only in (True, False):
            text = json.dumps(doc, ensure_ascii=ascii_only)
            shown = redact(text)
            assert shown == json.dumps({next(iter(doc)): MASK}), (text, shown)


def test_values_are_masked_whole_first() -> None:
    redact = Redactor([KEY])
    assert redact(f"key: {KEY}") == f"key: {MASK}"  # one mask, not one per line
