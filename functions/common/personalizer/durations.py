"""Durations as Personalizer wrote them: ISO 8601 (``PT10M``, ``P1DT2H``, ``PT00H10M00S``) or
.NET time spans (``00:10:00``, ``1.00:00:00``), which its v1.0 examples use."""

from __future__ import annotations

import re

from bandit.errors import FieldError

_ISO = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)
_SPAN = re.compile(
    r"(?:(?P<days>\d+)\.)?(?P<hours>\d{1,2}):(?P<minutes>\d{2}):(?P<seconds>\d{2}(?:\.\d+)?)"
)
_UNIT_SECONDS = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}


def parse_duration(text: str, field: str) -> float:
    """Seconds in ``text``; ``FieldError`` naming ``field`` when it is no duration.

    >>> parse_duration("PT10M", "w"), parse_duration("P1DT1H", "w"), parse_duration("00:10:00", "w")
    (600.0, 90000.0, 600.0)
    >>> parse_duration("PT00H00M05S", "w"), parse_duration("1.00:00:00", "w")
    (5.0, 86400.0)
    >>> parse_duration("P1M", "w")
    Traceback (most recent call last):
    ...
    bandit.errors.FieldError: w: 'P1M' is not a duration such as PT10M, PT4H, P1D or 00:10:00
    """
    value = text.strip().upper()
    match = _ISO.fullmatch(value) if value.startswith("P") else _SPAN.fullmatch(value)
    parts = {} if match is None else {k: v for k, v in match.groupdict().items() if v}
    if not parts or value in {"P", "PT"} or value.endswith("T"):
        detail = f"{text!r} is not a duration such as PT10M, PT4H, P1D or 00:10:00"
        raise FieldError(field, detail)
    return float(sum(float(number) * _UNIT_SECONDS[unit] for unit, number in parts.items()))


def format_duration(seconds: float) -> str:
    """ISO 8601 for a whole number of seconds, in the largest units that are exact.

    >>> format_duration(600), format_duration(86_400), format_duration(5), format_duration(5_430)
    ('PT10M', 'P1D', 'PT5S', 'PT1H30M30S')
    """
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{days}D" if days else "")
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    if clock or not days:
        out += "T" + (clock or "0S")
    return out
