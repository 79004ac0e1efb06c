"""Take every secret value of the lab out of text before it reaches a page.

The values are resolved from the lab's own references (services, the controller's token
and webhook secret, notification targets) plus the server's token and webhook secret. When
they cannot be resolved, text that might hold them is withheld rather than shown. Tokens
written into URLs (discord://ID/TOKEN, ?token=...) are masked too, referenced or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from blumeops.secrets.errors import SecretError
from blumeops.secrets.urltokens import MASK as MASK  # re-exported: one mask for all
from blumeops.secrets.urltokens import mask_url_tokens

MIN_LINE = 8  # a line of a multi-line secret this long or longer is masked on its own


def forms(value: str) -> set[str]:
    """The ways `value` shows up in text: as is, stripped, each non-trivial line of a
    multi-line value (a log or a diff quotes one line), and JSON-escaped (an API answer
    or a JSON log quotes it with \\n and \\")."""
    found = {value, value.strip()}
    lines = value.splitlines()
    if len(lines) > 1:
        found |= {line.strip() for line in lines if len(line.strip()) >= MIN_LINE}
    for v in (value, value.strip()):
        found.add(json.dumps(v)[1:-1])
        found.add(json.dumps(v, ensure_ascii=False)[1:-1])
    return {f for f in found if f}


class Redactor:
    def __init__(self, values: Iterable[str], problem: str | None = None) -> None:
        self.values = sorted({v for v in values if v}, key=len, reverse=True)
        # Longest first, so a value that contains another is masked whole.
        self._needles = sorted(set().union(*map(forms, self.values)), key=len,
                               reverse=True)
        self.problem = problem  # why secrets could not be resolved (then: withhold)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, MASK)
        return mask_url_tokens(text)  # a token written into a URL (an older commit's)

    def with_values_of(self, older: Redactor | None) -> Redactor:
        """Also mask what `older` masked: text made under the previous catalog may still
        hold its secrets."""
        if older is None:
            return self
        return Redactor([*self.values, *older.values], self.problem)

    def lines(self, text: str) -> list[str]:
        """Text for a page, or one line saying why it is withheld."""
        if self.problem:
            return [f"(withheld: the lab's secrets could not be resolved to redact them: "
                    f"{self.problem})"]
        return self(text).splitlines()


def secret_refs(lab: Any) -> list[tuple[str, str]]:
    """Every (name, reference) the catalog holds."""
    refs: list[tuple[str, str]] = []
    for name, svc in lab.services.items():
        refs += [(f"{name}.{k}", s.ref) for k, s in svc.secrets.items()]
    if lab.controller is not None:
        for field in ("api_token", "webhook_secret"):
            ref = getattr(lab.controller, field)
            if ref:
                refs.append((f"controller.{field}", ref))
    notify = getattr(lab, "notify", None)
    if notify is not None:
        refs += [(f"notify.{n}", t.url) for n, t in notify.targets.items()
                 if t.url.startswith(("vault:", "op://"))]
    return refs


def redactor_for(lab: Any, lab_dir: Path, extra: Iterable[str] = ()) -> Redactor:
    from blumeops.secrets.resolve import resolve  # lazy: keeps pyrage out of start-up

    refs = secret_refs(lab)
    try:
        values = resolve(refs, lab_dir) if refs else {}
    except SecretError as exc:
        return Redactor(extra, problem=str(exc).splitlines()[0][:200])
    return Redactor([*values.values(), *extra])
