#!/usr/bin/env python3
"""docs/openapi.json from docs/openapi.yaml, the document people edit.

The partner API serves the JSON form at GET /v1/openapi.json (API Design
Rules: the OpenAPI document in JSON at a standard place); the binary embeds
docs/openapi.json. `--check` fails when the committed JSON is not what the
YAML gives (scripts/test.sh runs it), so the two cannot drift.
"""
import json
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
doc = yaml.safe_load((root / "docs/openapi.yaml").read_text(encoding="utf-8"))
text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
target = root / "docs/openapi.json"
if "--check" in sys.argv[1:]:
    if target.read_text(encoding="utf-8") != text:
        sys.exit("docs/openapi.json does not match docs/openapi.yaml: run python3 scripts/openapi-json.py")
    print("docs/openapi.json matches docs/openapi.yaml")
else:
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target.relative_to(root)}")
