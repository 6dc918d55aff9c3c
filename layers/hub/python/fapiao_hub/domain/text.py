"""docs/rules.md section 5, text: what a text field may contain (no control or invisible characters),
how long a field is as legacy channels count it (GBK bytes), and when a field counts as empty. Pure.

A problem never repeats the field's value (a buyer's email, mobile or ID-card tax number is personal data).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from fapiao_hub.domain.models import Application, Problem


def blank(value: str | None) -> bool:
    """Not given, or only white space: an empty field."""
    return value is None or not value.strip()


_BAD_CATEGORIES = {
    "Cc": "control character",
    "Cf": "format character",
    "Co": "private-use character",
    "Cs": "surrogate",
    "Cn": "unassigned code point",
}


def check_text(path: tuple[str | int, ...], value: str) -> Problem | None:
    """Control and invisible characters (categories Cc, Cf, Co, Cs, Cn) are rejected."""
    if value.isprintable():  # in C: printable text has none of them (only separators Z* are also unprintable)
        return None
    for pos, char in enumerate(value, start=1):
        kind = _BAD_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            return Problem(
                path=path,
                message=(
                    f"contains U+{ord(char):04X} ({kind}) at position {pos}; control and "
                    "invisible characters are not allowed"
                ),
            )
    return None


def text_fields(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every str inside a model / dict / list, with its canonical path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            child = getattr(value, name)
            if name == "lines" and isinstance(value, Application):
                for line in child:
                    yield from text_fields(line, ("lines", line.index))
            else:
                yield from text_fields(child, (*path, name))
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield from text_fields(child, (*path, key))
    elif isinstance(value, list | tuple):
        for pos, child in enumerate(value):
            yield from text_fields(child, (*path, pos))


def gbk_length(text: str) -> int:
    """Length in bytes as legacy channels count it (GBK: a Chinese character counts 2).

    Characters outside GBK count 4 (their GB 18030 length): a conservative estimate.
    """
    return len(text.encode("gb18030"))


def check_byte_limit(path: tuple[str | int, ...], value: str | None, limit: int) -> Problem | None:
    """A channel's field limit in GBK bytes (docs/rules.md section 5): which field, by how much."""
    if not value:
        return None
    size = gbk_length(value)
    if size <= limit:
        return None
    return Problem(
        path=path,
        message=(f"is {size} bytes long (a Chinese character counts 2); the limit is {limit}, {size - limit} too long"),
    )
