"""The README and every doc in docs/ as CommonMark renders them (markdown-it-py, with GFM tables).

Every code fence closes on a line of its own, every ``## `` line is a heading (not swallowed by a
code block), and every relative link points at a file of the repository (and, for ``#anchor``
links to Markdown, at one of its headings, as GitHub spells the anchor).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(text)


def unclosed_fences(text: str, tokens: list[Token]) -> list[str]:
    """Fences whose last line is not a closing fence (CommonMark then runs them to the end)."""
    lines = text.splitlines()
    problems = []
    for token in tokens:
        if token.type != "fence" or token.map is None:
            continue
        start, end = token.map
        last = lines[end - 1].strip() if end - 1 > start and end - 1 < len(lines) else ""
        closer = re.fullmatch(rf"{re.escape(token.markup[0])}{{{len(token.markup)},}}", last)
        if not closer:
            problems.append(f"line {start + 1}: the {token.markup} fence is not closed on a line of its own")
    return problems


def swallowed_sections(text: str, tokens: list[Token]) -> list[str]:
    """``## `` lines that did not become a heading (inside a code block, most likely)."""
    heading_lines = {t.map[0] for t in tokens if t.type == "heading_open" and t.map}
    return [
        f"line {number + 1}: {line!r} is not a heading"
        for number, line in enumerate(text.splitlines())
        if line.startswith("## ") and number not in heading_lines
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(tokens: list[Token]) -> set[str]:
    found = set()
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            text = "".join(child.content for child in inline.children or () if child.type in ("text", "code_inline"))
            found.add(slug(text))
    return found


def links(tokens: list[Token]) -> list[str]:
    found = []
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open":
                found.append(str(child.attrs.get("href", "")))
    return found


def broken_links(path: Path, tokens: list[Token]) -> list[str]:
    problems = []
    for href in links(tokens):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("mailto:"):
            continue  # not a file of the repository
        target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not target.exists():
            problems.append(f"{href}: {target.relative_to(ROOT, walk_up=True)} does not exist")
            continue
        if parts.fragment and target.suffix == ".md":
            if parts.fragment not in anchors(parse(target.read_text(encoding="utf-8"))):
                problems.append(f"{href}: {target.name} has no heading #{parts.fragment}")
    return problems


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_document_renders_as_written(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tokens = parse(text)
    problems = unclosed_fences(text, tokens) + swallowed_sections(text, tokens) + broken_links(path, tokens)
    assert not problems, "\n".join(problems)


def test_the_docs_include_the_rules_and_the_readme_points_at_them() -> None:
    assert ROOT / "docs" / "rules.md" in DOCUMENTS
    readme = parse((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docs/rules.md" in links(readme)
    assert "docs/intake.md" in links(readme)


def test_a_fence_closed_on_a_text_line_is_caught() -> None:
    """The README's old defect: ``` followed by text is no closing fence; the next sections became code."""
    text = "## Try it\n\n```sh\ncurl ...\n``` Scheduled functions fire every 5 s.\n\n## The API\n\ntext\n"
    tokens = parse(text)
    assert swallowed_sections(text, tokens) == ["line 7: '## The API' is not a heading"]
    assert unclosed_fences(text, tokens) == ["line 3: the ``` fence is not closed on a line of its own"]
    fixed = text.replace("``` Scheduled", "```\n\nScheduled")
    assert swallowed_sections(fixed, parse(fixed)) == unclosed_fences(fixed, parse(fixed)) == []


def test_broken_relative_links_and_anchors_are_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## 6. Never issue twice\n", encoding="utf-8")
    page = tmp_path / "page.md"
    text = (
        "[ok](other.md#6-never-issue-twice) [gone](missing.md) [anchor](other.md#nope) "
        "[web](https://example.com/x) [self](#here)\n\n## Here\n"
    )
    page.write_text(text, encoding="utf-8")
    problems = broken_links(page, parse(text))
    assert len(problems) == 2
    assert problems[0].startswith("missing.md: ") and problems[0].endswith("does not exist")
    assert problems[1] == "other.md#nope: other.md has no heading #nope"
