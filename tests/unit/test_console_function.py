"""The console function (functions/console/app.py): the console's static files with their content
types, caching and security headers; nothing else is reachable through it."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

from fapiao_hub.domain.models import NEEDS_PERSON_STATUSES, FindingKind
from tests.unit.conftest import ROOT, FakeContext, event, load_handler

STATIC = ROOT / "functions" / "console" / "static"
handler = load_handler("console", "console_app_unit")


def get(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> dict:
    request = copy.deepcopy(event("console-get-index.json"))
    request["rawPath"] = request["requestContext"]["http"]["path"] = path
    request["requestContext"]["http"]["method"] = method
    request["headers"].update(headers or {})
    return handler(request, FakeContext())


def csp(answer: dict) -> dict[str, str]:
    policy = answer["headers"]["content-security-policy"]
    return {part.split()[0]: part.split(None, 1)[1] if " " in part else "" for part in policy.split("; ")}


@pytest.mark.parametrize(
    ("path", "file", "content_type"),
    [
        ("/ops/", "index.html", "text/html; charset=utf-8"),
        ("/ops/index.html", "index.html", "text/html; charset=utf-8"),
        ("/ops/console.js", "console.js", "text/javascript; charset=utf-8"),
        ("/ops/console.css", "console.css", "text/css; charset=utf-8"),
    ],
)
def test_each_file_with_its_content_type_and_headers(path: str, file: str, content_type: str) -> None:
    answer = get(path)
    assert answer["statusCode"] == 200
    assert answer["body"] == (STATIC / file).read_text(encoding="utf-8")
    headers = answer["headers"]
    assert headers["content-type"] == content_type
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-cache" and re.fullmatch(r'"[0-9a-f]{32}"', headers["etag"])
    policy = csp(answer)
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "unsafe-eval" not in headers["content-security-policy"]


def test_an_unchanged_file_is_a_304() -> None:
    etag = get("/ops/console.js")["headers"]["etag"]
    again = get("/ops/console.js", headers={"if-none-match": f'"other", {etag}'})
    assert again["statusCode"] == 304 and again["body"] == ""
    assert get("/ops/console.js", headers={"if-none-match": '"other"'})["statusCode"] == 200


def test_ops_without_slash_moves_to_the_console() -> None:
    answer = get("/ops")
    assert answer["statusCode"] == 308 and answer["headers"]["location"] == "/ops/"


@pytest.mark.parametrize(
    "path",
    [
        "/ops/nothing.js",
        "/ops/../app.py",
        "/ops/%2e%2e/app.py",
        "/ops/static/console.js",
        "/ops//etc/passwd",
        "/ops/app.py",
        "/v1/ops/summary",
        "/ops/local-session",  # the local run's own route, never the function's
    ],
)
def test_nothing_else_is_served(path: str) -> None:
    answer = get(path)
    assert answer["statusCode"] == 404 and answer["body"] == "not found\n"
    assert answer["headers"]["x-content-type-options"] == "nosniff"


def test_only_get_and_head() -> None:
    assert get("/ops/", method="POST")["statusCode"] == 405
    head = get("/ops/", method="HEAD")
    assert head["statusCode"] == 200 and head["body"] == "" and head["headers"]["content-type"].startswith("text/html")


def test_the_page_has_no_inline_script_style_or_remote_resource() -> None:
    """What the CSP would block must not be needed: no inline script or handler, no CDN."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all('src="' in attrs and body.strip() == "" for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "<style" not in html and "style=" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "a resource from another origin"


def test_the_script_builds_no_html_from_strings() -> None:
    """Every value is untrusted: the console builds its DOM with createElement/textContent only."""
    for path in STATIC.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in source, f"{path.name} uses {sink}"
        assert "localStorage" not in source, "the token belongs to the tab (sessionStorage)"
        assert "console.log" not in source


def test_every_static_file_is_served() -> None:
    names = sorted(p.relative_to(STATIC).as_posix() for p in Path(STATIC).rglob("*") if p.is_file())
    assert names == ["console.css", "console.js", "index.html", "playbook.json"]
    for name in names:
        assert get(f"/ops/{name}")["statusCode"] == 200


def _playbook_module():
    spec = importlib.util.spec_from_file_location("console_playbook", ROOT / "functions" / "console" / "playbook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_served_playbook_is_docs_operations_md_as_it_is_now() -> None:
    """The console's playbook is the docs' section, not a copy that drifts: rebuild it after editing the docs."""
    playbook = _playbook_module()
    fresh = playbook.render((ROOT / "docs" / "operations.md").read_text(encoding="utf-8"))
    assert (STATIC / "playbook.json").read_text(encoding="utf-8") == fresh, (
        "functions/console/static/playbook.json is stale: python functions/console/playbook.py"
    )
    answer = get("/ops/playbook.json")
    assert answer["statusCode"] == 200 and answer["headers"]["content-type"] == "application/json"


def test_the_playbook_has_a_what_to_do_line_per_needs_a_person_status_and_finding_kind() -> None:
    entries = json.loads((STATIC / "playbook.json").read_text(encoding="utf-8"))["entries"]
    # VOIDING too: a void to be done at the channel by a person waits there.
    wanted = {s.value for s in NEEDS_PERSON_STATUSES} | {"VOIDING"} | {k.value for k in FindingKind}
    assert set(entries) == wanted
    for name, entry in entries.items():
        assert entry["anchor"] == name.lower() and len(entry["whatToDo"]) > 40 and entry["text"], name
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name in wanted:
        assert f"\n### `{name}`\n" in docs, name


def test_a_playbook_section_without_its_what_to_do_line_is_refused() -> None:
    playbook = _playbook_module()
    with pytest.raises(ValueError, match="STUCK: no"):
        playbook.build("# Ops\n\n## Playbook\n\n### `STUCK`\n\nOnly prose.\n\n## Next\n")
