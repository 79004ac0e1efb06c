"""How blumeops reaches a host: this machine (`local`) or OpenSSH (`ssh`).

Every transport runs the same stdlib-only `agent` on the host's python3, one request per
round trip, data as JSON on stdin. See `base.Transport` for the verbs.
"""
