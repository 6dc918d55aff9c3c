"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

Names, codes, reasons and channel messages come from business systems and channels; opened in
Excel or LibreOffice, a cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return
before one) would be evaluated. Such a cell gets a leading apostrophe, unless it is a plain number
(a negative amount stays a number). Every CSV the hub writes passes its cells through here.
"""

from __future__ import annotations

from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(text: str) -> str:
    return "'" + text if text[:1] in _FORMULA_STARTS and not _is_number(text) else text


def csv_safe_row(row: dict[str, Any]) -> dict[str, Any]:
    """A csv.DictWriter row with each text cell made safe (numbers, booleans and None as they are)."""
    return {name: csv_safe(value) if isinstance(value, str) else value for name, value in row.items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
