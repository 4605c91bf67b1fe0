"""JSON features -> VW text: no input can inject VW syntax, and VW parses what we meant."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import vowpalwabbit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bandit.domain import Candidate
from bandit.errors import FeatureError
from bandit.serve.features import (
    MAX_ABS_VALUE,
    MAX_DEPTH,
    MAX_FEATURES_PER_EXAMPLE,
    MAX_STRING_LENGTH,
    MIN_ABS_VALUE,
    ActionLines,
    action_line,
    action_lines,
    context_namespaces,
    escape,
    item_namespaces,
    labeled,
    shared_line,
)

# --------------------------------------------------------------------------------------------
# Strategies: hostile JSON within the documented caps
# --------------------------------------------------------------------------------------------

# Characters that mean something to VW's text format, control characters and unicode that
# renders invisibly or reorders text; mixed with any non-surrogate code point.
_HOSTILE = (
    "|: \t\n\r\0\x0b\x0c\x1c\x85\u2028\u2029"  # separators and line breaks
    "=.^'\"~%#,\\/+-_"  # VW / escaping punctuation
    "\u200b\u200c\u200d\ufeff"  # zero-width
    "\u200e\u200f\u202e\u2066\u2069"  # bidi / RTL overrides
    "\u0301\u0308\u20dd"  # combining marks
    "é中😀"
)
CHARS = st.one_of(st.sampled_from(_HOSTILE), st.characters(codec="utf-8"))
TEXT = st.text(CHARS, max_size=MAX_STRING_LENGTH)
SHORT_TEXT = st.text(CHARS, max_size=16)
KEYS = st.one_of(SHORT_TEXT, TEXT)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE, allow_nan=False),
    TEXT,
)

# A value of nesting <= 6 ends at flatten depth <= 7 in a context and <= 8 in item features,
# both within MAX_DEPTH.
VALUE_NESTING = 6
assert MAX_DEPTH >= VALUE_NESTING + 2


def json_values(nesting: int) -> st.SearchStrategy[Any]:
    """JSON-like values whose containers nest at most ``nesting`` levels."""
    if nesting == 0:
        return SCALARS
    inner = json_values(nesting - 1)
    return st.one_of(
        SCALARS,
        st.lists(inner, max_size=3),
        st.dictionaries(KEYS, inner, max_size=3),
    )


JSON_VALUES = json_values(VALUE_NESTING)
JSON_OBJECTS = st.dictionaries(KEYS, JSON_VALUES, max_size=5)
CANDIDATES = st.builds(
    Candidate,
    id=TEXT,
    features=JSON_OBJECTS,
    category=st.none() | TEXT,
    creator=st.none() | TEXT,
    created_at=st.none() | st.floats(min_value=0, max_value=2e9),
)

# --------------------------------------------------------------------------------------------
# Independent reference: count leaves, never look at the featurizer's output format
# --------------------------------------------------------------------------------------------


def leaf_count(value: Any) -> int:
    """Non-None scalar leaves of a JSON value."""
    if value is None:
        return 0
    if isinstance(value, dict):
        return sum(leaf_count(inner) for inner in value.values())
    if isinstance(value, list):
        return sum(leaf_count(inner) for inner in value)
    return 1


def expected_shared_sizes(context: dict[str, Any]) -> list[int]:
    """Features per namespace of the shared line: one namespace per key with a leaf.

    A context with no features still renders one empty namespace (``shared |``), because VW
    would otherwise read a bare ``shared`` line as an action.
    """
    sizes = [leaf_count(value) for value in context.values()]
    return [size for size in sizes if size > 0] or [0]


def expected_action_sizes(candidate: Candidate) -> list[int]:
    """``I`` holds id, category, creator and non-dict features; one namespace per dict."""
    base = 1 + (candidate.category is not None) + (candidate.creator is not None)
    base += sum(leaf_count(v) for v in candidate.features.values() if not isinstance(v, dict))
    extra = [leaf_count(v) for v in candidate.features.values() if isinstance(v, dict)]
    return [base, *(size for size in extra if size > 0)]


def total_leaves(candidate: Candidate) -> int:
    return sum(expected_action_sizes(candidate))


_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_/+%~.=:-]+")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_/+%~-]*")


def check_feature_token(token: str) -> None:
    """A feature is ``name:finite-float`` or ``name=value`` with nothing VW could misread."""
    assert _TOKEN_CHARS.fullmatch(token), token
    if ":" in token:
        name, value = token.split(":")  # exactly one ':'
        assert name
        number = float(value)
        assert math.isfinite(number)
        assert number == 0 or MIN_ABS_VALUE <= abs(number) <= MAX_ABS_VALUE
        assert "=" not in token
    else:
        name, value = token.split("=")  # exactly one '='
        assert name
        assert value


def namespace_sizes(line: str, *, shared: bool) -> list[int]:
    """Parse one rendered line into features-per-namespace, checking every token."""
    tokens = line.split(" ")
    if shared:
        assert tokens[0] == "shared"
        tokens = tokens[1:]
    assert tokens, line
    assert tokens[0].startswith("|"), line
    sizes: list[int] = []
    for token in tokens:
        assert token, f"empty token (double space) in {line!r}"
        if token.startswith("|"):
            name = token[1:]
            assert _NAME_CHARS.fullmatch(name), token
            if name:
                assert name[0] == ("C" if shared else "I"), token
            sizes.append(0)
        else:
            check_feature_token(token)
            sizes[-1] += 1
    return sizes


def check_line_is_safe(line: str) -> None:
    assert line.isascii(), line
    assert all(ch == " " or ch.isprintable() for ch in line), line
    for forbidden in ("\n", "\r", "\0", "\t"):
        assert forbidden not in line


def render_example(context: dict[str, Any], candidates: Sequence[Candidate]) -> list[str]:
    return [shared_line(context), *action_lines(candidates)]


# --------------------------------------------------------------------------------------------
# The key property: any JSON in, well-formed VW text out, counted by the reference
# --------------------------------------------------------------------------------------------


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(context=JSON_OBJECTS, candidates=st.lists(CANDIDATES, max_size=4))
def test_any_json_renders_one_wellformed_line_per_example(
    context: dict[str, Any], candidates: list[Candidate]
) -> None:
    # Given any JSON context and candidates within the documented caps
    assume(leaf_count(context) <= MAX_FEATURES_PER_EXAMPLE)
    assume(all(total_leaves(c) <= MAX_FEATURES_PER_EXAMPLE for c in candidates))

    # When they are rendered as a cb_adf example
    lines = render_example(context, candidates)

    # Then there is exactly one physical line per example, even for strict line splitters
    assert len(lines) == 1 + len(candidates)
    assert len("\n".join(lines).splitlines()) == 1 + len(candidates)
    for line in lines:
        check_line_is_safe(line)

    # And the namespaces and features are exactly those the reference counts
    shared_expected = expected_shared_sizes(context)
    assert lines[0].count("|") == len(shared_expected)
    assert namespace_sizes(lines[0], shared=True) == shared_expected
    for line, candidate in zip(lines[1:], candidates, strict=True):
        action_expected = expected_action_sizes(candidate)
        assert line.count("|") == len(action_expected)
        assert namespace_sizes(line, shared=False) == action_expected


# VW drops features whose value parses to 0. Its float parser folds the mantissa's decimals into
# the exponent and underflows below about 1e-37, so "1.2345678901234e-25" may vanish; values of
# at least 1e-20 (exponent - 17 digits >= -37) surely survive.
_VW_SURELY_NONZERO = 1e-20
_CONSTANT_NAMESPACE = 128


def vw_bounds(line: str) -> tuple[int, int]:
    """(min, max) number of features VW should parse from ``line``."""
    sure = maybe = 0
    for token in line.split(" "):
        if token.startswith("|") or token == "shared":
            continue
        if ":" not in token:
            sure += 1
            continue
        magnitude = abs(float(token.split(":")[1]))
        if magnitude >= _VW_SURELY_NONZERO:
            sure += 1
        elif magnitude > 0:
            maybe += 1
    return sure, sure + maybe


@dataclass
class SharedWorkspace:
    """Holds one VW workspace for many hypothesis examples.

    (Hypothesis would mistake a bare ``Workspace`` argument for a test-case object, because VW
    has a ``setup_example`` method.)
    """

    vw: vowpalwabbit.Workspace


@pytest.fixture(scope="module")
def workspace() -> Iterator[SharedWorkspace]:
    vw = vowpalwabbit.Workspace("--cb_adf --quiet")
    yield SharedWorkspace(vw)
    vw.finish()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(context=JSON_OBJECTS, candidates=st.lists(CANDIDATES, min_size=1, max_size=4))
def test_vw_parses_exactly_the_rendered_features(
    workspace: SharedWorkspace, context: dict[str, Any], candidates: list[Candidate]
) -> None:
    vw = workspace.vw
    assume(leaf_count(context) <= MAX_FEATURES_PER_EXAMPLE)
    assume(all(total_leaves(c) <= MAX_FEATURES_PER_EXAMPLE for c in candidates))
    lines = render_example(context, candidates)

    # When VW predicts on the example, it scores every candidate with a finite number
    scores = vw.predict(lines)
    assert len(scores) == len(candidates)
    assert all(math.isfinite(score) for score in scores)

    # And VW's own parse has the feature counts we rendered, in the namespaces we meant
    examples = vw.parse(lines, vowpalwabbit.LabelType.CONTEXTUAL_BANDIT)
    try:
        assert len(examples) == len(lines)
        for index, (example, line) in enumerate(zip(examples, lines, strict=True)):
            allowed = {ord("C" if index == 0 else "I"), _CONSTANT_NAMESPACE}
            ords = [example.namespace(i) for i in range(example.num_namespaces())]
            assert set(ords) <= allowed, (line, ords)
            parsed = sum(
                example.num_features_in(i) for i, ns in enumerate(ords) if ns != _CONSTANT_NAMESPACE
            )
            low, high = vw_bounds(line)
            assert low <= parsed <= high, line
    finally:
        vw.finish_example(examples)


def test_vw_reads_featureless_context_as_shared() -> None:
    # Given a context with no usable feature
    line = shared_line({"nothing": None, "empty": {}})

    # Then the line is still a shared example, so VW scores exactly the one action
    assert line == "shared |"
    vw = vowpalwabbit.Workspace("--cb_adf --quiet")
    try:
        assert vw.predict([line, action_line(Candidate("a"))]) == [0.0]
    finally:
        vw.finish()


# --------------------------------------------------------------------------------------------
# Escaping: injective, and only a tiny safe alphabet
# --------------------------------------------------------------------------------------------

_ESCAPED = re.compile(r"[A-Za-z0-9_/+%~-]+")


def unescape(token: str) -> str:
    """Reference decoder of ``escape`` (its existence proves ``escape`` is injective)."""
    if token == "~":
        return ""
    out = bytearray()
    index = 0
    while index < len(token):
        if token[index] == "%":
            out.append(int(token[index + 1 : index + 3], 16))
            index += 3
        else:
            out.extend(token[index].encode("ascii"))
            index += 1
    return out.decode("utf-8")


@settings(max_examples=300, deadline=None)
@given(text=st.text(CHARS, max_size=64))
def test_escape_uses_only_safe_characters_and_decodes_back(text: str) -> None:
    escaped = escape(text)
    assert _ESCAPED.fullmatch(escaped)
    assert unescape(escaped) == text


@settings(max_examples=300, deadline=None)
@given(a=st.text(CHARS, max_size=8), b=st.text(CHARS, max_size=8))
def test_escape_is_injective(a: str, b: str) -> None:
    assert (escape(a) == escape(b)) == (a == b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("", "~"),
        ("a b", "a%20b"),
        ("%", "%25"),
        ("e\u0301", "\u00e9"),  # decomposed vs precomposed é stay distinct
        ("a\u200bb", "ab"),
        ("a.b", "a%2Eb"),
    ],
)
def test_escape_keeps_lookalikes_apart(a: str, b: str) -> None:
    assert escape(a) != escape(b)


def test_escape_examples() -> None:
    assert escape("sci fi|x:1") == "sci%20fi%7Cx%3A1"
    assert escape("") == "~"
    assert escape("~") == "%7E"
    assert escape("plain-Token_1/+") == "plain-Token_1/+"
    assert escape("é") == "%C3%A9"
    assert escape("\n\0") == "%0A%00"


# --------------------------------------------------------------------------------------------
# Concrete featurization rules
# --------------------------------------------------------------------------------------------


def test_nested_dicts_flatten_with_dots_inside_the_top_level_namespace() -> None:
    context = {"user": {"profile": {"age": 31, "country": "NZ"}, "premium": True}}
    assert context_namespaces(context) == [
        ("Cuser", ["profile.age:31.0", "profile.country=NZ", "premium=true"])
    ]


def test_each_top_level_key_is_its_own_namespace_in_order() -> None:
    context = {"device": "ios", "hour": 21, "user": {"age": 31, "tags": ["a", "b"]}}
    assert context_namespaces(context) == [
        ("Cdevice", ["device=ios"]),
        ("Chour", ["hour:21.0"]),
        ("Cuser", ["age:31.0", "tags=a", "tags=b"]),
    ]
    assert shared_line(context) == (
        "shared |Cdevice device=ios |Chour hour:21.0 |Cuser age:31.0 tags=a tags=b"
    )


def test_string_and_boolean_lists_are_sets_of_categorical_features() -> None:
    assert context_namespaces({"tags": ["sci fi", "drama"], "flags": [True, False]}) == [
        ("Ctags", ["tags=sci%20fi", "tags=drama"]),
        ("Cflags", ["flags=true", "flags=false"]),
    ]


def test_booleans_are_categorical() -> None:
    assert context_namespaces({"premium": True, "trial": False}) == [
        ("Cpremium", ["premium=true"]),
        ("Ctrial", ["trial=false"]),
    ]


def test_numbers_are_weighted_and_list_numbers_indexed() -> None:
    assert context_namespaces({"scores": [1.5, -2, 0], "rate": 0.25}) == [
        ("Cscores", ["scores.0:1.5", "scores.1:-2.0", "scores.2:0.0"]),
        ("Crate", ["rate:0.25"]),
    ]


def test_dicts_and_lists_inside_lists_are_indexed() -> None:
    assert context_namespaces({"hist": [{"id": "x", "n": 2}, ["a", 3]]}) == [
        ("Chist", ["hist.0.id=x", "hist.0.n:2.0", "hist.1=a", "hist.1.1:3.0"])
    ]


def test_none_is_skipped_and_empty_namespaces_dropped() -> None:
    context: dict[str, Any] = {
        "gone": None,
        "user": {"age": None, "city": "Oslo"},
        "empty": [],
        "blank": {},
    }
    assert context_namespaces(context) == [("Cuser", ["city=Oslo"])]


def test_hostile_keys_and_values_are_escaped() -> None:
    context = {"a|b c": {"x:y": "v\nw", "": ""}}
    assert context_namespaces(context) == [("Ca%7Cb%20c", ["x%3Ay=v%0Aw", "~=~"])]


def test_item_namespaces_hold_identity_scalars_and_one_namespace_per_dict() -> None:
    candidate = Candidate(
        "movie 1",
        features={"price": 9.5, "genres": ["a", "b"], "stats": {"views": 10, "rating": None}},
        category="film",
        creator="studio|x",
    )
    assert item_namespaces(candidate) == [
        (
            "I",
            [
                "id=movie%201",
                "category=film",
                "creator=studio%7Cx",
                "price:9.5",
                "genres=a",
                "genres=b",
            ],
        ),
        ("Istats", ["views:10.0"]),
    ]
    assert action_line(candidate) == (
        "|I id=movie%201 category=film creator=studio%7Cx price:9.5 genres=a genres=b"
        " |Istats views:10.0"
    )


def test_item_without_optional_fields_has_only_its_id() -> None:
    assert action_line(Candidate("x")) == "|I id=x"


def test_labeled_prefixes_a_cb_label() -> None:
    assert labeled("|I id=x", -1.0, 0.25) == "0:-1.0:0.25 |I id=x"


# --------------------------------------------------------------------------------------------
# Rejected inputs name the field path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, 10**400, 10**31, -1e31, 2 * MAX_ABS_VALUE],
    ids=["nan", "inf", "-inf", "huge-int-overflows-float", "int-over-cap", "-1e31", "2e30"],
)
def test_non_finite_or_huge_numbers_are_rejected_naming_the_context_path(bad: float) -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"user": {"age": bad}})
    assert caught.value.field == "context.user.age"


@pytest.mark.parametrize("tiny", [1e-197, -4.702141776186589e-197, 5e-324, 1e-31])
def test_tiny_numbers_are_written_as_zero_so_vw_never_reads_infinity(tiny: float) -> None:
    # Given a number VW's own parser would turn into infinity (e.g. "1e-197" -> inf)
    line = action_line(Candidate("a", {"x": tiny}))

    # Then it is written as 0 and VW keeps scoring (and learning) finite numbers
    assert line == "|I id=a x:0.0"
    vw = vowpalwabbit.Workspace("--cb_adf --quiet")
    try:
        vw.learn(["shared |Cu u=1", labeled(line, -1.0, 0.5)])
        assert all(math.isfinite(score) for score in vw.predict(["shared |Cu u=1", line]))
    finally:
        vw.finish()


def test_smallest_kept_magnitude_is_written_as_is() -> None:
    assert context_namespaces({"x": MIN_ABS_VALUE, "y": -2.5e-30}) == [
        ("Cx", ["x:1e-30"]),
        ("Cy", ["y:-2.5e-30"]),
    ]


def test_largest_allowed_magnitude_is_accepted() -> None:
    assert context_namespaces({"x": MAX_ABS_VALUE, "y": -(10**30)}) == [
        ("Cx", ["x:1e+30"]),
        ("Cy", ["y:-1e+30"]),
    ]


def test_bad_candidate_feature_names_the_candidate_index() -> None:
    candidates = [Candidate(f"c{i}") for i in range(3)] + [Candidate("c3", {"x": math.nan})]
    with pytest.raises(FeatureError) as caught:
        action_lines(candidates)
    assert caught.value.field == "candidates[3].features.x"
    assert "finite" in caught.value.message


def test_bad_value_inside_a_list_names_its_index() -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"scores": [1.0, math.inf]})
    assert caught.value.field == "context.scores[1]"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({1: "a"}, "context"),
        ({"user": {2: "a"}}, "context.user"),
        ({"user": {"tags": [{None: 1}]}}, "context.user.tags[0]"),
    ],
)
def test_non_string_keys_are_rejected(context: dict[Any, Any], field: str) -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces(context)
    assert caught.value.field == field
    assert "keys must be strings" in caught.value.message


def test_non_string_candidate_feature_keys_are_rejected() -> None:
    with pytest.raises(FeatureError) as caught:
        action_lines([Candidate("a"), Candidate("b", {3: "x"})])  # type: ignore[dict-item]
    assert caught.value.field == "candidates[1].features"


@pytest.mark.parametrize("bad", [object(), b"bytes", {1, 2}], ids=["object", "bytes", "set"])
def test_unsupported_types_are_rejected(bad: object) -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"user": {"x": bad}})
    assert caught.value.field == "context.user.x"


def test_context_must_be_an_object() -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces(["not", "an", "object"])  # type: ignore[arg-type]
    assert caught.value.field == "context"


# --------------------------------------------------------------------------------------------
# Caps: at the cap is fine, one past it names the path
# --------------------------------------------------------------------------------------------


def nested(levels: int, leaf: Any = 1) -> Any:
    """``{"a": {"a": ... leaf}}`` with ``levels`` dicts."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def test_depth_cap_in_context() -> None:
    # The top-level value sits at depth 1, so MAX_DEPTH - 1 nested dicts put the leaf at the cap.
    assert context_namespaces({"a": nested(MAX_DEPTH - 1)}) == [
        ("Ca", [".".join(["a"] * (MAX_DEPTH - 1)) + ":1.0"])
    ]
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"a": nested(MAX_DEPTH)})
    assert caught.value.field == "context" + ".a" * (MAX_DEPTH + 1)
    assert "deeper" in caught.value.message


def test_depth_cap_in_lists_and_candidate_features() -> None:
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"l": [[[[[[[[[1]]]]]]]]]})
    assert caught.value.field == "context.l" + "[0]" * MAX_DEPTH

    # Item features start one level deeper (under ``features``).
    action_lines([Candidate("x", {"a": nested(MAX_DEPTH - 2)})])
    with pytest.raises(FeatureError) as caught:
        action_lines([Candidate("x", {"a": nested(MAX_DEPTH - 1)})])
    assert caught.value.field == "candidates[0].features" + ".a" * MAX_DEPTH


def test_string_length_cap_on_values_keys_and_identity() -> None:
    at_cap = "x" * MAX_STRING_LENGTH
    too_long = "x" * (MAX_STRING_LENGTH + 1)
    assert context_namespaces({"user": {"bio": at_cap}}) == [("Cuser", [f"bio={at_cap}"])]
    assert context_namespaces({at_cap: 1}) == [("C" + at_cap, [f"{at_cap}:1.0"])]

    with pytest.raises(FeatureError) as caught:
        context_namespaces({"user": {"bio": too_long}})
    assert caught.value.field == "context.user.bio"

    with pytest.raises(FeatureError) as caught:
        context_namespaces({"user": {too_long: 1}})
    assert caught.value.field == f"context.user.{too_long}"

    with pytest.raises(FeatureError) as caught:
        action_lines([Candidate("ok"), Candidate(too_long)])
    assert caught.value.field == "candidates[1].id"

    with pytest.raises(FeatureError) as caught:
        action_lines([Candidate("ok", category=too_long)])
    assert caught.value.field == "candidates[0].category"

    with pytest.raises(FeatureError) as caught:
        context_namespaces({"tags": ["ok", too_long]})
    assert caught.value.field == "context.tags[1]"


def test_string_length_cap_counts_characters_not_bytes() -> None:
    # 512 four-byte characters are within the cap even though they escape to 6144 bytes.
    line = shared_line({"emoji": "😀" * MAX_STRING_LENGTH})
    assert line == "shared |Cemoji emoji=" + "%F0%9F%98%80" * MAX_STRING_LENGTH


def test_feature_count_cap_in_context() -> None:
    at_cap = context_namespaces({"many": list(range(MAX_FEATURES_PER_EXAMPLE))})
    assert len(at_cap[0][1]) == MAX_FEATURES_PER_EXAMPLE

    # The cap spans all namespaces of the example, not each one.
    half = MAX_FEATURES_PER_EXAMPLE // 2
    with pytest.raises(FeatureError) as caught:
        context_namespaces({"a": ["x"] * half, "b": ["y"] * half, "c": {"d": 1}})
    assert caught.value.field == "context.c.d"
    assert str(MAX_FEATURES_PER_EXAMPLE) in caught.value.message

    with pytest.raises(FeatureError) as caught:
        context_namespaces({"many": list(range(MAX_FEATURES_PER_EXAMPLE + 1))})
    assert caught.value.field == f"context.many[{MAX_FEATURES_PER_EXAMPLE}]"


def test_feature_count_cap_is_per_candidate() -> None:
    # The id is one feature, so MAX - 1 more fit; each candidate has its own budget.
    full = Candidate("a", {"v": list(range(MAX_FEATURES_PER_EXAMPLE - 1))})
    lines = action_lines([full, full])
    assert [line.count(" ") for line in lines] == [MAX_FEATURES_PER_EXAMPLE] * 2

    over = Candidate("b", {"v": list(range(MAX_FEATURES_PER_EXAMPLE))})
    with pytest.raises(FeatureError) as caught:
        action_lines([full, over])
    assert caught.value.field == f"candidates[1].features.v[{MAX_FEATURES_PER_EXAMPLE - 1}]"


@settings(max_examples=100, deadline=None)
@given(
    pool=st.lists(CANDIDATES, min_size=1, max_size=6),
    picks=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=6),
    capacity=st.integers(1, 8),
)
def test_cached_action_lines_equal_fresh_ones(
    pool: list[Candidate], picks: list[list[int]], capacity: int
) -> None:
    # The rank path featurizes through a bounded cache: whatever it holds or evicts, every
    # answer is the line action_lines writes, and a candidate that fails keeps failing.
    lines = ActionLines(capacity=capacity)
    for pick in picks:
        candidates = [pool[i % len(pool)] for i in pick]
        try:
            expected = action_lines(candidates)
        except FeatureError as error:
            with pytest.raises(FeatureError) as raised:
                lines(candidates)
            assert raised.value.field == error.field
            continue
        assert lines(candidates) == expected
        assert len(lines) <= capacity


def test_cached_action_lines_tell_apart_candidates_that_differ_only_in_features() -> None:
    lines = ActionLines()
    first = lines([Candidate("a", {"x": 1}), Candidate("a", {"x": True}), Candidate("a", {})])
    assert len(set(first)) == 3
    assert lines([Candidate("a", {"x": 1})]) == first[:1]
    assert lines.hits == 1
