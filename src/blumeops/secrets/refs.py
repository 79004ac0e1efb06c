"""The shapes of secret references, in one place and cheap to import (no pydantic).

The catalog validates references with these patterns and the apply path parses them
with the same ones, so a reference `validate` accepts is one `apply` can read.
"""

from __future__ import annotations

import re

# One segment of a 1Password reference: an item or vault name may hold spaces and
# parentheses ("Authentik (prod)") but not '/' or '?', nor start or end with a space.
_OP_SEGMENT = r"[^/?\s](?:[^/?]*[^/?\s])?"
# op://VAULT/ITEM[/SECTION]/FIELD[?attribute=VALUE], as the 1Password CLI reads it.
OP_REF = re.compile(rf"^op://(?P<vault>{_OP_SEGMENT})/(?P<item>{_OP_SEGMENT})/"
                    rf"(?P<field>{_OP_SEGMENT}(?:/{_OP_SEGMENT})?)(?:\?[a-z-]+=[A-Za-z0-9-]+)?$")
SECRET_REF = re.compile(rf"^(vault:[A-Za-z0-9_.\-/]+|{OP_REF.pattern[1:-1]})$")
