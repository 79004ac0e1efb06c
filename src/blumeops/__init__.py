"""BlumeOps: one catalog and one loop for a homelab."""

import os

# blumeops uses no pydantic plugins; looking for them scans every installed package's
# entry points (~12 ms of each command's start). A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
