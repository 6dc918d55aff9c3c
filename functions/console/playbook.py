"""Build static/playbook.json from docs/operations.md's "Playbook" section (run at build time, not in Lambda).

The console shows each needs-a-person status's and finding kind's "What to do" line and the section
itself, offline: the hub serves this copy with the console, so it is the playbook as shipped.
``python functions/console/playbook.py`` rewrites it; tests/unit/test_console_function.py checks it is fresh.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "operations.md"
OUT = Path(__file__).resolve().parent / "static" / "playbook.json"
WHAT_TO_DO = "**What to do:**"


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's) gives the heading, e.g. "`MANUAL_REVIEW`" -> "manual_review"."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def build(markdown: str) -> dict:
    section = markdown.split("\n## Playbook\n", 1)[1].split("\n## ", 1)[0]
    entries: dict[str, dict] = {}
    for block in section.split("\n### ")[1:]:
        heading, _, body = block.partition("\n")
        name = heading.strip().strip("`")
        # Plain text (the console shows text only): Markdown's code ticks go.
        paragraphs = [" ".join(p.replace("`", "").split()) for p in body.strip().split("\n\n") if p.strip()]
        what = next((p for p in paragraphs if p.startswith(WHAT_TO_DO)), None)
        if what is None:
            raise ValueError(f"playbook section {name}: no {WHAT_TO_DO} line")
        entries[name] = {
            "anchor": anchor(heading),
            "whatToDo": what[len(WHAT_TO_DO) :].strip(),
            "text": [p for p in paragraphs if p is not what],
        }
    return {"source": "docs/operations.md#playbook", "entries": entries}


def render(markdown: str) -> str:
    return json.dumps(build(markdown), ensure_ascii=False, indent=1) + "\n"


def main() -> int:
    OUT.write_text(render(DOCS.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
