"""The allowlist of Vowpal Wabbit arguments a policy spec may carry.

Only learning and exploration settings are allowed: no flag that reads or writes files
(``-d``, ``-f``, ``-i``, ``--cache_file``, ``--readable_model``, ``--invert_hash`` ...), none that
changes the I/O format, and every value is checked against an ASCII pattern. Numbers must fit
VW's 32-bit floats (at most ``MAX_FLOAT_VALUE`` in size), ensembles (``--cover``, ``--bag``,
``--rnd``) hold at most 32 policies, and a flag that takes one setting may be given once
(VW refuses two disagreeing values when the model is built).

Cost is capped too, since one spec's model serves every request of its policy (issue 11):
at most ``MAX_INTERACTION_TERMS`` interaction terms of at most ``MAX_INTERACTION_ORDER``
namespaces each, written out (no ``:`` wildcard), and ``-b`` plus the ensemble's size within
``MAX_WEIGHT_BITS``. The rest of the cost depends on the request's features; ``cost_factor``
gives the spec's share of it and ``bandit.serve.cost`` holds every request to a budget.
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
_NS = r"[A-Za-z]"
MAX_LRQ_RANK = 64
_LRQ_RANK = r"([1-9]|[1-5][0-9]|6[0-4])"
MAX_INTERACTION_TERMS = 8
MAX_INTERACTION_ORDER = 3
# 2**bits weights, times the ensemble's policies (rounded up to a power of two, as VW strides
# them), each of 4 floats (adaptive, normalized): 2**24 * 16 bytes is 256 MB, a quarter of a
# 1 GB Lambda.
MAX_WEIGHT_BITS = 24
DEFAULT_BITS = 18

ALLOWED_FLAGS: dict[str, _Flag] = {
    "--cb_type": _Flag(1, r"ips|dr|dm|mtr"),
    "-q": _Flag(1, _NS + "{2}"),
    "--quadratic": _Flag(1, _NS + "{2}"),
    "--cubic": _Flag(1, _NS + "{3}"),
    "--interactions": _Flag(1, _NS + f"{{2,{MAX_INTERACTION_ORDER}}}"),
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
    # Low-rank quadratics: latent factors between two namespaces (``HI8``: rank 8), learned
    # online, e.g. the user's history with the items ("people who liked X like Y").
    "--lrq": _Flag(1, _NS + "{2}" + _LRQ_RANK),
    "--lrqfa": _Flag(1, _NS + "{2}" + _LRQ_RANK),
    "--lrqdropout": _Flag(0),
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


INTERACTION_FLAGS = frozenset({"-q", "--quadratic", "--cubic", "--interactions"})
LOW_RANK_FLAGS = frozenset({"--lrq", "--lrqfa"})
# Flags that may be given several times (each adds one more interaction or ignored namespace).
REPEATABLE_FLAGS = INTERACTION_FLAGS | LOW_RANK_FLAGS | {"--ignore", "--ignore_linear"}
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
    if flag in INTERACTION_FLAGS and isinstance(value, str) and ":" in value:
        # ``:`` crosses every namespace in the data, so its cost cannot be read from the spec.
        raise SpecError(
            field,
            f"wildcard ':' in {flag} is not allowed: name the namespaces "
            "(C for context, I for items, e.g. CI)",
        )
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
    flags = _flags(tokens, field)
    _refuse_repeats(flags)
    _check_cost_caps(tokens, flags)
    return tokens


def validate_vw_settings(args: Sequence[str], explore_args: Sequence[str]) -> None:
    """Check both argument lists of a spec together: no setting given in both.

    >>> validate_vw_settings(["--cb_type", "mtr"], ["--cb_type", "ips"])
    Traceback (most recent call last):
    ...
    bandit.errors.SpecError: vw.explore_args[0]: flag '--cb_type' is already given at vw.args[0]
    """
    tokens = [*args, *explore_args]
    flags = [*_flags(list(args), "vw.args"), *_flags(list(explore_args), "vw.explore_args")]
    _refuse_repeats(flags)
    _check_cost_caps(tokens, flags)


def _value(tokens: Sequence[str], flag: str) -> str | None:
    return tokens[tokens.index(flag) + 1] if flag in tokens else None


def _check_cost_caps(tokens: Sequence[str], flags: Sequence[tuple[str, str]]) -> None:
    """At most ``MAX_INTERACTION_TERMS`` terms; bits and ensemble within ``MAX_WEIGHT_BITS``.

    ``tokens`` are the arguments that ``flags`` (``(field, flag)`` in order) were read from.
    """
    terms = [field for field, flag in flags if flag in INTERACTION_FLAGS | LOW_RANK_FLAGS]
    if len(terms) > MAX_INTERACTION_TERMS:
        raise SpecError(
            terms[MAX_INTERACTION_TERMS],
            f"at most {MAX_INTERACTION_TERMS} interaction terms are allowed",
        )
    bits_field = next((f for f, flag in flags if _ALIASES.get(flag, flag) == "--bit_precision"), "")
    bits = int(_value(tokens, "-b") or _value(tokens, "--bit_precision") or DEFAULT_BITS)
    for field, flag in flags:
        if flag in _ENSEMBLES:
            size = int(_value(tokens, flag) or 1) + (flag == "--cover")
            needed = bits + (size - 1).bit_length()
            if needed > MAX_WEIGHT_BITS:
                raise SpecError(
                    bits_field or field,
                    f"-b {bits} with {flag} {size - (flag == '--cover')} needs 2^{needed} "
                    f"weights (at most 2^{MAX_WEIGHT_BITS}: lower -b or the ensemble)",
                )


# Ensembles keep one set of weights per policy (``--cover N`` keeps N + 1).
_ENSEMBLES = ("--cover", "--bag", "--rnd")


def interaction_terms(args: Sequence[str]) -> list[str]:
    """The namespace letters of every interaction term of ``args`` (validated arguments).

    >>> interaction_terms(["--cb_type", "mtr", "-q", "CI", "--cubic", "CCI"])
    ['CI', 'CCI']
    """
    tokens = list(args)
    return [tokens[i + 1] for i, token in enumerate(tokens[:-1]) if token in INTERACTION_FLAGS]


def low_rank_terms(args: Sequence[str]) -> list[tuple[str, int]]:
    """The namespace letters and rank of every low-rank quadratic of ``args`` (validated).

    >>> low_rank_terms(["-q", "CI", "--lrq", "HI8", "--lrqfa", "CI16"])
    [('HI', 8), ('CI', 16)]
    """
    tokens = list(args)
    return [
        (tokens[i + 1][:2], int(tokens[i + 1][2:]))
        for i, token in enumerate(tokens[:-1])
        if token in LOW_RANK_FLAGS
    ]


def cost_factor(args: Sequence[str]) -> int:
    """How many times the work of plain ``cb_adf`` (mtr) a slot costs under ``args``.

    Measured on this code (``tests/reliability/test_cost_bound.py``), rounded up: the ``dr``
    estimator learns about 7 times slower, ``ips`` 2; ``--bag N`` about 1.7 N, ``--cover N``
    about 8 N (its learn), ``--rnd N`` about 20 N; ``--regcb`` 10, ``--squarecb`` 6.

    >>> cost_factor(["--cb_type", "dr"]), cost_factor(["--cb_type", "ips", "--bag", "4"])
    (8, 16)
    """
    tokens = list(args)
    factor = {"dr": 8, "ips": 2}.get(_value(tokens, "--cb_type") or "mtr", 1)
    per_policy = {"--bag": 2, "--cover": 8, "--rnd": 24}
    for flag, weight in per_policy.items():
        count = _value(tokens, flag)
        if count is not None:
            factor *= weight * int(count)
    if "--regcb" in tokens or "--regcbopt" in tokens:
        factor *= 12
    if "--squarecb" in tokens:
        factor *= 6
    return factor


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
