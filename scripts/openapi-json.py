#!/usr/bin/env python3
"""docs/*.json from the docs/*.yaml OpenAPI documents, the ones people edit.

The partner API serves docs/openapi.json at GET /v1/openapi.json, the
console API docs/console-openapi.json at GET /api/v1/openapi.json (API
Design Rules: the OpenAPI document in JSON at the base of each API); the
binary embeds both. `--check` fails when a committed JSON is not what its
YAML gives (scripts/test.sh runs it), so the two forms cannot drift.
"""
import json
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = ["docs/openapi", "docs/console-openapi"]

stale = []
for name in DOCUMENTS:
    doc = yaml.safe_load((root / f"{name}.yaml").read_text(encoding="utf-8"))
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    target = root / f"{name}.json"
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
        else:
            print(f"{name}.json matches {name}.yaml")
    else:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target.relative_to(root)}")
if stale:
    sys.exit("; ".join(f"{n}.json does not match {n}.yaml" for n in stale)
             + ": run python3 scripts/openapi-json.py")
