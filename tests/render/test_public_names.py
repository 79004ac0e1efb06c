"""Public names are shown where people look for a service: its docs page, the routing
page, its Homepage entry and `blumeops show`, beside the private URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from test_public import load, small_lab

from blumeops.catalog.model import Lab
from blumeops.render import RenderContext, docs, homepage


def lab_with_homepage(tmp: Path, **public: Any) -> tuple[Lab, Path]:
    data = small_lab(**public)
    data["services"]["docs"]["homepage"] = {"group": "Apps", "description": "Docs"}
    data["services"]["app"]["homepage"] = {"group": "Apps"}
    data["services"]["app"]["routes"] = {"app.ts": "http",
                                         "admin.ops": {"port": "http", "public": False}}
    result = load(data, tmp)
    assert result.ok and result.lab is not None, [str(d) for d in result.errors]
    return result.lab, tmp / "lab.yaml"


def bodies(lab: Lab, module: Any) -> dict[str, str]:
    return {r.path: r.body for r in module.render(lab, RenderContext())}


def test_docs_pages_show_public_names_beside_private_ones(tmp_path: Path) -> None:
    lab, _ = lab_with_homepage(tmp_path)
    pages = bodies(lab, docs)
    page = pages["docs/services/docs.md"]
    assert "| URL | Public URL | Port | Upstream | Reachable from |" in page
    row = next(line for line in page.splitlines()
               if line.startswith("| https://docs.ops.example.com"))
    assert "| https://www.example.com |" in row
    assert "the internet, through the public proxy on [[edge]]" in row
    # app: one route published (as app.example.com), one opted out.
    app = pages["docs/services/app.md"]
    assert "| https://app.tail1.ts.net | https://app.example.com |" in app
    opted_out = next(line for line in app.splitlines()
                     if line.startswith("| https://admin.ops.example.com"))
    assert "| - |" in opted_out and "internet" not in opted_out
    routing = pages["docs/routing.md"]
    assert "## Public names" in routing
    assert ("| https://www.example.com | `docs.ops.example.com` | [[docs]] | "
            "`https://alpha.tail1.ts.net:443` |") in routing
    assert "| https://app.example.com | `app.tail1.ts.net` | [[app]] |" in routing


def test_a_lab_without_public_names_has_no_public_column(tmp_path: Path) -> None:
    lab, _ = lab_with_homepage(tmp_path)
    data = lab.model_dump(mode="json", by_alias=True, exclude={"include"})
    data["public"] = None
    plain = Lab.model_validate(data)
    pages = bodies(plain, docs)
    assert "Public URL" not in pages["docs/services/docs.md"]
    assert "## Public names" not in pages["docs/routing.md"]
    assert "public:" not in bodies(plain, homepage)["homepage/services.yaml"]


def test_homepage_entries_say_their_public_url(tmp_path: Path) -> None:
    lab, _ = lab_with_homepage(tmp_path, tls="off", listen=8080)
    entries = yaml.safe_load(bodies(lab, homepage)["homepage/services.yaml"].split(
        "\n", 2)[2])
    apps = {k: v for item in entries[0]["Apps"] for k, v in item.items()}
    # Private href (people at home), public URL in the description (TLS off: its port).
    assert apps["docs"]["href"] == "https://docs.ops.example.com"
    assert apps["docs"]["description"] == "Docs (public: http://www.example.com:8080)"
    assert apps["app"]["description"] == "public: http://app.example.com:8080"


def test_show_gives_each_published_route_its_public_url(tmp_path: Path) -> None:
    _, path = lab_with_homepage(tmp_path)
    out = subprocess.run([sys.executable, "-m", "blumeops", "show", str(path), "-o", "json"],
                         capture_output=True, text=True, check=True)
    services = json.loads(out.stdout)["services"]
    assert services["docs"]["routes"]["docs.ops"]["public_url"] == "https://www.example.com"
    assert services["docs"]["routes"]["docs.ops"]["url"] == "https://docs.ops.example.com"
    assert services["app"]["routes"]["app.ts"]["public_url"] == "https://app.example.com"
    assert "public_url" not in services["app"]["routes"]["admin.ops"]
