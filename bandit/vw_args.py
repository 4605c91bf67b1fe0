"""The allowlist of Vowpal Wabbit arguments a policy spec may carry.

Only learning and exploration settings are allowed: no flag that reads or writes files
(``-d``, ``-f``, ``-i``, ``--cache_file``, ``--readable_model``, ``--invert_hash`` ...), none that
changes the I/O format, and every value is checked against an ASCII pattern. Numbers must fit
VW's 32-bit floats (at most ``MAX_FLOAT_VALUE`` in size), ensembles (``--cover``, ``--bag``,
``--rnd``) hold at most 32 policies, and a flag that takes one setting may be given once
(VW refuses two disagreeing values when the model is built).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bandit.errors import SpecError

MAX_FLOAT_VALUE = 1e30


@dataclass(frozen=True, slots=True)
class _Flag:
    values: int
    pattern: str = ""


_FLOAT = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_INT = r"\d{1,6}"
_ENSEMBLE = r"[1-9]|[12][0-9]|3[0-2]"
_NS = r"[A-Za-z:]"

ALLOWED_FLAGS: dict[str, _Flag] = {
    "--cb_type": _Flag(1, r"ips|dr|dm|mtr"),
    "-q": _Flag(1, _NS + "{2}"),
    "--quadratic": _Flag(1, _NS + "{2}"),
    "--cubic": _Flag(1, _NS + "{3}"),
    "--interactions": _Flag(1, _NS + "{2,4}"),
    "-l": _Flag(1, _FLOAT),
    "--learning_rate": _Flag(1, _FLOAT),
    "--power_t": _Flag(1, _FLOAT),
    "--initial_t": _Flag(1, _FLOAT),
    "--l1": _Flag(1, _FLOAT),
    "--l2": _Flag(1, _FLOAT),
    "-b": _Flag(1, r"1[0-9]|2[0-2]|[1-9]"),
    "--bit_precision": _Flag(1, r"1[0-9]|2[0-2]|[1-9]"),
    "--noconstant": _Flag(0),
    "--ignore": _Flag(1, r"[A-Za-z]"),
    "--ignore_linear": _Flag(1, r"[A-Za-z]"),
    "--adaptive": _Flag(0),
    "--normalized": _Flag(0),
    "--invariant": _Flag(0),
    "--coin": _Flag(0),
    "--random_seed": _Flag(1, _INT),
    "--epsilon": _Flag(1, _FLOAT),
    "--cover": _Flag(1, _ENSEMBLE),
    "--bag": _Flag(1, _ENSEMBLE),
    "--rnd": _Flag(1, _ENSEMBLE),
    "--first": _Flag(1, _INT),
    "--psi": _Flag(1, _FLOAT),
    "--nounif": _Flag(0),
    "--squarecb": _Flag(0),
    "--gamma_scale": _Flag(1, _FLOAT),
    "--gamma_exponent": _Flag(1, _FLOAT),
    "--regcb": _Flag(0),
    "--regcbopt": _Flag(0),
    "--mellowness": _Flag(1, _FLOAT),
    "--softmax": _Flag(0),
    "--lambda": _Flag(1, _FLOAT),
}

EXPLORATION_FLAGS = frozenset(
    {
        "--epsilon",
        "--cover",
        "--bag",
        "--rnd",
        "--first",
        "--psi",
        "--nounif",
        "--squarecb",
        "--gamma_scale",
        "--gamma_exponent",
        "--regcb",
        "--regcbopt",
        "--mellowness",
        "--softmax",
        "--lambda",
    }
)


# Flags that may be given several times (each adds one more interaction or ignored namespace).
REPEATABLE_FLAGS = frozenset(
    {"-q", "--quadratic", "--cubic", "--interactions", "--ignore", "--ignore_linear"}
)
_ALIASES = {"-l": "--learning_rate", "-b": "--bit_precision", "-q": "--quadratic"}


def _flags(tokens: Sequence[str], field: str) -> list[tuple[str, str]]:
    """``(field[index], flag)`` of every flag, each flag and value checked against the allowlist."""
    found: list[tuple[str, str]] = []
    index = 0
    while index < len(tokens):
        flag = tokens[index]
        spec = ALLOWED_FLAGS.get(flag)
        if spec is None:
            allowed = ", ".join(sorted(ALLOWED_FLAGS))
            raise SpecError(
                f"{field}[{index}]", f"flag {flag!r} is not allowed (allowed: {allowed})"
            )
        for offset in range(1, spec.values + 1):
            position = index + offset
            if position >= len(tokens):
                raise SpecError(f"{field}[{index}]", f"flag {flag!r} needs a value")
            _check_value(flag, spec, tokens[position], f"{field}[{position}]")
        found.append((f"{field}[{index}]", flag))
        index += 1 + spec.values
    return found


def _check_value(flag: str, spec: _Flag, value: str, field: str) -> None:
    # ASCII: ``\d`` would also match digits of other scripts, which VW cannot read.
    if not isinstance(value, str) or not re.fullmatch(spec.pattern, value, re.ASCII):
        raise SpecError(field, f"invalid value {value!r} for {flag}")
    if spec.pattern == _FLOAT and not abs(float(value)) <= MAX_FLOAT_VALUE:
        raise SpecError(field, f"{flag} must be at most {MAX_FLOAT_VALUE:g} in size")


def _refuse_repeats(flags: Iterable[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for field, flag in flags:
        if flag in REPEATABLE_FLAGS:
            continue
        name = _ALIASES.get(flag, flag)
        if name in seen:
            raise SpecError(field, f"flag {flag!r} is already given at {seen[name]}")
        seen[name] = field


def validate_vw_args(args: Sequence[str], field: str = "vw.args") -> list[str]:
    """Check every flag and value against the allowlist; return the arguments unchanged.

    >>> validate_vw_args(["--cb_type", "mtr", "-q", "CI"])
    ['--cb_type', 'mtr', '-q', 'CI']
    >>> validate_vw_args(["-f", "/tmp/x"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.args[0]: flag '-f' is not allowed ...
    >>> validate_vw_args(["-l", "0.5", "--learning_rate", "0.1"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.args[2]: flag '--learning_rate' is already given at vw.args[0]
    """
    tokens = list(args)
    _refuse_repeats(_flags(tokens, field))
    return tokens


def validate_vw_settings(args: Sequence[str], explore_args: Sequence[str]) -> None:
    """Check both argument lists of a spec together: no setting given in both.

    >>> validate_vw_settings(["--cb_type", "mtr"], ["--cb_type", "ips"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.explore_args[0]: flag '--cb_type' is already given at vw.args[0]
    """
    _refuse_repeats(
        [*_flags(list(args), "vw.args"), *_flags(list(explore_args), "vw.explore_args")]
    )


# Exploration reductions that only accept some cost estimators (VW refuses the rest at start).
_CB_TYPES_ALLOWED = {
    "--cover": frozenset({"dr", "ips", "mtr"}),
    "--squarecb": frozenset({"mtr"}),
    "--regcb": frozenset({"mtr"}),
    "--regcbopt": frozenset({"mtr"}),
}


def validate_cb_type(args: Sequence[str], explore_args: Sequence[str]) -> None:
    """Reject a ``--cb_type`` that the chosen VW exploration reduction does not support.

    >>> validate_cb_type(["--cb_type", "dm"], ["--cover", "3"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.args: --cb_type dm does not work with --cover (use dr, ips, mtr)
    """
    tokens = list(args)
    cb_type = tokens[tokens.index("--cb_type") + 1] if "--cb_type" in tokens else "mtr"
    for flag, allowed in _CB_TYPES_ALLOWED.items():
        if flag in explore_args and cb_type not in allowed:
            choices = ", ".join(sorted(allowed))
            raise SpecError(
                "vw.args", f"--cb_type {cb_type} does not work with {flag} (use {choices})"
            )
