"""The catalog's JSON Schema, for editors (yaml-language-server and the like).

Generated from the model, then widened where the model accepts shorthands before
validation (`tls: off`, `routes: {www.ops: http}`, `secrets: {X: "vault:..."}`,
numbers in `environment`, one `public.address`, `schedule: "15 3 * * *"`), so an
editor never flags a catalog blumeops accepts.
"""

from __future__ import annotations

from typing import Any


def catalog_schema() -> dict[str, Any]:
    # lazy: keeps pydantic out of start-up
    from blumeops.catalog.model import Lab

    data = Lab.model_json_schema()
    defs = data["$defs"]
    domain = defs["Domain"]["properties"]
    domain["tls"] = {
        "anyOf": [{"$ref": "#/$defs/TLS"}, {"$ref": "#/$defs/TLSMode"},
                  {"const": False, "description": "YAML's bare `off`"}, {"type": "null"}],
        "description": "a TLS mode, or {mode, provider, email}",
    }
    service = defs["Service"]["properties"]
    service["routes"]["additionalProperties"] = {
        "anyOf": [{"type": "string", "description": "the port name, for an HTTP route"},
                  {"$ref": "#/$defs/Route"}]}
    service["secrets"]["additionalProperties"] = {
        "anyOf": [{"type": "string", "description": "vault:NAME or op://VAULT/ITEM/FIELD"},
                  {"$ref": "#/$defs/SecretRef"}]}
    service["environment"]["additionalProperties"] = {"type": ["string", "number", "boolean"]}
    defs["Public"]["properties"]["address"] = {
        "anyOf": [{"type": "string"}, defs["Public"]["properties"]["address"]],
        "description": defs["Public"]["properties"]["address"]["description"]}
    service["schedule"] = {
        "anyOf": [{"type": "string", "description": "a cron expression, or an interval (1h)"},
                  {"$ref": "#/$defs/Schedule"}, {"type": "null"}],
        "description": service["schedule"].get("description", "")}
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    data["title"] = "BlumeOps lab catalog"
    return data
