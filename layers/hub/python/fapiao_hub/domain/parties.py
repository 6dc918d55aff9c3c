"""docs/rules.md section 5, parties: a seller and a buyer need a name; a tax number must be well formed
(a unified social credit code, GB 32100-2015, or a legacy 15, 17 or 20 character number); a special
(专票) invoice needs the buyer's. Pure.

A problem describes what is wrong without repeating the number (a person's tax number is their
ID-card number).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stdnum.cn import uscc
from stdnum.exceptions import InvalidChecksum, ValidationError

from fapiao_hub.domain.models import Application, Problem
from fapiao_hub.domain.text import blank

_USCC_ALPHABET = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")  # GB 32100-2015: no I O Z S V
_LEGACY = re.compile(r"[0-9A-Z]+", re.ASCII)
_LEGACY_LENGTHS = (15, 17, 20)


def check_tax_number(path: tuple[str | int, ...], value: str, *, strict: bool = False) -> Problem | None:
    """docs/rules.md section 5: malformed -> error; wrong check character -> warning (strict: error).

    The message describes what is wrong without repeating the number (a person's tax number is
    their ID-card number).
    """
    length = len(value)
    if length == 18:
        for pos, char in enumerate(value, start=1):
            if char not in _USCC_ALPHABET:
                return Problem(
                    path=path,
                    message=(
                        f"tax number is malformed: character {pos} {char!r} is not allowed in a "
                        "unified social credit code (0-9 and A-Y without I, O, Z, S, V)"
                    ),
                )
        try:
            uscc.validate(value)
        except InvalidChecksum:
            return _wrong_check_character(path, value, strict)
        except ValidationError:
            # stdnum wants digits in the first 8 positions; GB 32100 has letters in the first
            # two (registration authority, organisation type: e.g. 'N2', 'Y1'), digits in 3-8
            # (administrative division).
            if not value[2:8].isdigit():
                return Problem(
                    path=path,
                    message=(
                        "tax number is malformed: characters 3-8 of a unified social credit code "
                        "are the administrative division code (digits only)"
                    ),
                )
            if uscc.calc_check_digit(value) != value[-1]:
                return _wrong_check_character(path, value, strict)
        return None
    if length in _LEGACY_LENGTHS:
        if _LEGACY.fullmatch(value) is None:
            bad = next(c for c in value if _LEGACY.fullmatch(c) is None)
            return Problem(
                path=path,
                message=(
                    f"tax number is malformed: {bad!r} is not allowed in a {length}-character "
                    "tax number (digits and uppercase letters A-Z only)"
                ),
            )
        return None
    return Problem(
        path=path,
        message=(
            f"tax number is malformed: it has {length} characters; a tax number has 18 "
            "(unified social credit code) or 15, 17 or 20 (legacy)"
        ),
    )


def _wrong_check_character(path: tuple[str | int, ...], value: str, strict: bool) -> Problem:
    return Problem(
        path=path,
        message=(
            "tax number fails the unified social credit code check character "
            f"(expected {uscc.calc_check_digit(value)!r}, got {value[-1]!r})"
        ),
        warning=not strict,
    )


def check_parties(app: Application, *, strict_tax_numbers: bool) -> Iterator[Problem]:
    """Both parties' names and tax numbers; the buyer's tax number on a special invoice."""
    for role in ("seller", "buyer"):
        party = getattr(app, role)
        if blank(party.name):
            yield Problem(path=(role, "name"), message=f"{role} name is empty")
        if not blank(party.tax_number):
            problem = check_tax_number((role, "tax_number"), party.tax_number, strict=strict_tax_numbers)
            if problem is not None:
                yield problem
    if app.invoice_type.is_special and blank(app.buyer.tax_number):
        yield Problem(
            path=("buyer", "tax_number"),
            message="the buyer's tax number is required on a special (专票) invoice",
        )
