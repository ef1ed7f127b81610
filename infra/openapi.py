"""Export each service's OpenAPI document to openapi/<service>.json (`make openapi`).

tests/test_openapi.py fails when a committed document drifts from the code.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("catalog", "tiler", "ingest", "push", "orders", "discovery", "federation", "portal")


def document(service: str) -> dict[str, Any]:
    """The OpenAPI document of a service, built from its app factory (no database needed)."""
    app = importlib.import_module(f"csdr_{service}.app").create_app()
    return app.openapi()


def render(doc: dict[str, Any]) -> str:
    """Stable text for a document: sorted keys, two-space indent, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    """Write every service's document."""
    for service in SERVICES:
        path = ROOT / "openapi" / f"{service}.json"
        path.write_text(render(document(service)))
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
