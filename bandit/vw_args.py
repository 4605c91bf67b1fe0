"""The allowlist of Vowpal Wabbit arguments a policy spec may carry.

Only learning and exploration settings are allowed: no flag that reads or writes files
(``-d``, ``-f``, ``-i``, ``--cache_file``, ``--readable_model``, ``--invert_hash`` ...), none that
changes the I/O format, and every value is checked against a pattern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bandit.errors import SpecError


@dataclass(frozen=True, slots=True)
class _Flag:
    values: int
    pattern: str = ""


_FLOAT = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_INT = r"\d{1,6}"
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
    "--cover": _Flag(1, _INT),
    "--bag": _Flag(1, _INT),
    "--rnd": _Flag(1, _INT),
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


def validate_vw_args(args: Sequence[str], field: str = "vw.args") -> list[str]:
    """Check every flag and value against the allowlist; return the arguments unchanged.

    >>> validate_vw_args(["--cb_type", "mtr", "-q", "CI"])
    ['--cb_type', 'mtr', '-q', 'CI']
    >>> validate_vw_args(["-f", "/tmp/x"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.args[0]: flag '-f' is not allowed ...
    """
    tokens = list(args)
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
            value = tokens[position]
            if not re.fullmatch(spec.pattern, value):
                raise SpecError(f"{field}[{position}]", f"invalid value {value!r} for {flag}")
        index += 1 + spec.values
    return tokens


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
