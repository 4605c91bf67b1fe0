"""Unicode and VW syntax in every string field, property-based, through the real handlers.

Ids, labels, feature keys and values, reward fields and path parameters get VW syntax (``|``,
``:``, whitespace, newlines), NUL and control characters, RTL and zero-width characters, emoji,
lone surrogates (sent as JSON escapes) and lengths at and past the caps. Each request is either
refused - a 4xx JSON naming the first offending field, nothing stored - or served, with the
slate's ids exactly among the ids sent and every value stored exactly as sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bandit.serve.features import action_line
from bandit.spec import POLICY_NAME_PATTERN
from functions.admin.app import lambda_handler as admin_handler
from functions.common import decision_store
from functions.rank.app import lambda_handler as rank_handler
from functions.rewards.app import lambda_handler as rewards_handler
from tests.functional.conftest import Api, Handler, queue_depth
from tests.reliability.test_hostile_input import (
    ACTIVATE,
    POLICY,
    RANK,
    ROLLBACK,
    assert_refused,
    assert_served,
    call,
    rank_body,
    send,
    snapshot,
)

HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class StateWatch:
    """Checks that refused requests change nothing, reading the state as seldom as it can.

    As in ``refuse_all``, a run of refused requests is checked with one snapshot before its
    first request and one after its last: before the next accepted request, and at the end of
    the test (the ``watch`` fixture's teardown).
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._known: dict[str, Any] | None = None

    def before(self, *, refused: bool) -> None:
        """Called before each request with whether it must be refused."""
        event("refused" if refused else "served")  # shown by --hypothesis-show-statistics
        if refused:
            if self._known is None:
                self._known = snapshot(self.env)
        else:
            self.check()
            self._known = None

    def check(self) -> None:
        """Assert that the refused requests since the last check changed nothing."""
        if self._known is not None:
            assert snapshot(self.env) == self._known, "a refused request changed the state"


@pytest.fixture
def watch(aws: dict[str, str]) -> Iterator[StateWatch]:
    """The state watch of one test (shared by its hypothesis examples, like ``aws``)."""
    state = StateWatch(aws)
    yield state
    state.check()


# --------------------------------------------------------------------------------------------
# Strategies and oracles
# --------------------------------------------------------------------------------------------

# VW syntax and odd unicode that every string field takes; control characters below 0x20 (which
# ids refuse) and lone surrogates (which every field refuses) only come in as poison.
VW_SYNTAX = "|: \x7f\x85\u2028\u2029=.^'\"~%#,\\/+-_"
UNICODE = "\u200b\u200c\u200d\ufeff\u200e\u200f\u202e\u2066\u2069\u0301\u20dde中😀\U0010ffff"
CONTROLS = "\x00\t\n\r\x0b\x0c\x1b\x1f"
SURROGATES = "\ud800\udbff\udc00\udfff"
CHARS = st.one_of(
    st.sampled_from(VW_SYNTAX + UNICODE), st.characters(codec="utf-8", exclude_categories=["Cc"])
)
GOOD_EDGES = ["a" * 255, "a" * 256, "é" * 256, "😀" * 256, "|" * 256]
BAD_EDGES = ["", "a" * 257, "😀" * 257, "x" * 513]


def hostile_text(max_size: int = 12) -> st.SearchStrategy[str]:
    """Text full of VW syntax and odd unicode; one time in twelve, poisoned.

    Poison is a control character or a lone surrogate put anywhere, or a length at a cap's
    edge, so that a request with several strings is still served about half the time.
    """
    good = st.one_of(st.text(CHARS, min_size=1, max_size=max_size), st.sampled_from(GOOD_EDGES))
    poisoned = st.one_of(
        st.builds(
            lambda text, at, bad: text[:at] + bad + text[at:],
            good,
            st.integers(0, max_size),
            st.sampled_from(CONTROLS + SURROGATES),
        ),
        st.sampled_from(BAD_EDGES),
    )
    # one_of would pick each distinct branch equally often: weigh by sampling a flag
    flags = st.sampled_from([False] * 11 + [True])
    return flags.flatmap(lambda poison: poisoned if poison else good)


def unicode_ok(text: str) -> bool:
    """Whether ``text`` is valid unicode (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_ok(text: str) -> bool:
    """The API's id rule: 1-256 characters, no control characters below 0x20, valid unicode."""
    return 1 <= len(text) <= 256 and not re.search(r"[\x00-\x1f]", text) and unicode_ok(text)


def label_ok(text: str) -> bool:
    """``category`` and ``creator``: at most 256 characters of valid unicode."""
    return len(text) <= 256 and unicode_ok(text)


def feature_text_ok(text: str) -> bool:
    """Feature keys and string values: at most 512 characters of valid unicode."""
    return len(text) <= 512 and unicode_ok(text)


def first_bad(fields: Iterable[tuple[str, bool]]) -> str | None:
    """The first field (in validation order) whose value is invalid."""
    return next((name for name, ok in fields if not ok), None)


# A VW feature token as the featuriser writes it: escaped name, then "=value" or ":number".
_TOKEN = re.compile(r"^[A-Za-z0-9_/+%~.-]+(=[A-Za-z0-9_/+%~-]+|:[-+0-9.e]+)$")


def assert_no_vw_injection(record: Any) -> None:
    """Each candidate is one VW line whose namespaces and tokens hold no VW syntax."""
    for candidate in record.candidates:
        line = action_line(candidate.to_candidate())
        assert "\n" not in line and "\r" not in line and line.isascii(), line
        for namespace in line.split("|")[1:]:
            name, *tokens = namespace.split(" ")
            assert re.fullmatch(r"I[A-Za-z0-9_/+%~-]*", name), line
            assert all(_TOKEN.match(token) for token in tokens if token), line


@HYPOTHESIS
@given(
    user_id=st.none() | hostile_text(),
    ids=st.lists(hostile_text(), min_size=1, max_size=4, unique=True),
    labels=st.lists(st.tuples(hostile_text(), hostile_text()), min_size=4, max_size=4),
    exclude=st.lists(hostile_text(), max_size=2),
    baseline=st.none() | st.lists(hostile_text(), max_size=2),
)
@example(user_id="\ud800", ids=["a"], labels=[("c", "d")] * 4, exclude=[], baseline=None).via(
    "lone surrogate in user_id"
)
@example(
    user_id="u\u202e\u200b",
    ids=["a|b:c d\ne", "x" * 256, "😀 |I", "tab\there"],
    labels=[("sci fi|x:1", "\x00\x1f"), ("\u202e", "😀"), ("", " "), ("a" * 256, "é" * 256)],
    exclude=["x" * 256],
    baseline=["a|b:c d\ne"],
).via("VW syntax, RTL and controls where allowed")
def test_hostile_strings_in_rank_ids_and_labels(
    aws: dict[str, str],
    api: Api,
    watch: StateWatch,
    *,
    user_id: str | None,
    ids: list[str],
    labels: list[tuple[str, str]],
    exclude: list[str],
    baseline: list[str] | None,
) -> None:
    candidates = [
        {"id": id_, "category": category, "creator": creator, "features": {"id": id_}}
        for id_, (category, creator) in zip(ids, labels, strict=False)
    ]
    body: dict[str, Any] = {
        "context": {"user": {"id": user_id}},
        "user_id": user_id,
        "candidates": candidates,
        "exclude": exclude,
        "baseline": baseline,
    }
    fields = [("context.user.id", user_id is None or feature_text_ok(user_id))]
    fields += [("user_id", user_id is None or id_ok(user_id))]
    for i, candidate in enumerate(candidates):
        fields += [
            (f"candidates[{i}].id", id_ok(candidate["id"])),
            (f"candidates[{i}].features.id", feature_text_ok(candidate["id"])),
            (f"candidates[{i}].category", label_ok(candidate["category"])),
            (f"candidates[{i}].creator", label_ok(candidate["creator"])),
        ]
    fields += [(f"exclude[{i}]", id_ok(value)) for i, value in enumerate(exclude)]
    fields += [(f"baseline[{i}]", id_ok(value)) for i, value in enumerate(baseline or [])]
    expected = first_bad(fields)
    watch.before(refused=expected is not None)
    status, ranked = send(api, "rank", body)
    if expected is not None:
        assert_refused(status, ranked, expected)
        assert status == 422
        return
    # Served: the slate's ids are exactly some of the ids sent, never an excluded one
    allowed = [id_ for id_ in ids if id_ not in exclude]
    assert_served(status, ranked, allowed, 5)
    record = decision_store.get("acme", ranked["event_id"]).record
    assert [c.id for c in record.candidates] == ids
    assert [(c.category, c.creator) for c in record.candidates] == labels[: len(ids)]
    assert (record.user_id, record.context) == (user_id, body["context"])
    assert_no_vw_injection(record)


def _json_values(depth: int) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(-1e30, 1e30, allow_nan=False),
        hostile_text(),
    )
    if depth == 0:
        return scalars
    inner = _json_values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3),
        st.dictionaries(hostile_text(), inner, max_size=3),
    )


OBJECTS = st.dictionaries(hostile_text(), _json_values(2), max_size=4)


def bad_paths(value: Any, path: str) -> set[str]:
    """Paths the API may name for ``value``: bad strings, and objects with a bad key."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if not feature_text_ok(key):
                out.add(path)
            out |= bad_paths(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            out |= bad_paths(inner, f"{path}[{index}]")
    elif isinstance(value, str) and not feature_text_ok(value):
        out.add(path)
    return out


@settings(HYPOTHESIS, max_examples=30)
@given(context=OBJECTS, features=st.lists(OBJECTS, min_size=1, max_size=3))
@example(context={"\ud800": 1}, features=[{"a|b": "c:d e\nf"}]).via(
    "lone surrogate in a context key"
)
@example(
    context={"u|s:e r\n": {"\x00": "\u202e😀", "t\t": ["a b", "c|d", True, None, 1e30]}},
    features=[{"": "", " ": " ", "|": {":": ":"}}, {"x": "y\udc00"}],
).via("VW syntax in keys and values, a lone surrogate in a feature value")
def test_hostile_keys_and_values_in_context_and_features(
    aws: dict[str, str],
    api: Api,
    watch: StateWatch,
    *,
    context: dict[str, Any],
    features: list[dict[str, Any]],
) -> None:
    ids = [f"c{i}" for i in range(len(features))]
    candidates = [{"id": id_, "features": f} for id_, f in zip(ids, features, strict=True)]
    bad = bad_paths(context, "context")
    for i, feature in enumerate(features):
        bad |= bad_paths(feature, f"candidates[{i}].features")
    watch.before(refused=bool(bad))
    status, ranked = send(api, "rank", {"context": context, "candidates": candidates})
    if bad:
        assert_refused(status, ranked)
        assert (status, ranked["field"] in bad) == (422, True), (bad, ranked)
        return
    assert_served(status, ranked, ids, 5)
    record = decision_store.get("acme", ranked["event_id"]).record
    assert record.context == context
    assert [c.features for c in record.candidates] == features
    assert_no_vw_injection(record)


@HYPOTHESIS
@given(
    event_id=hostile_text(),
    item_id=hostile_text(),
    type_=st.one_of(st.sampled_from(["click", "a" * 64, "buy_1", "X"]), hostile_text()),
    batched=st.booleans(),
)
@example(event_id="evt|1:2", item_id="\ud800", type_="click", batched=False).via("surrogate")
@example(event_id="e\n", item_id="i", type_="cl ick", batched=True).via("control char")
def test_hostile_strings_in_rewards(
    aws: dict[str, str],
    api: Api,
    watch: StateWatch,
    *,
    event_id: str,
    item_id: str,
    type_: str,
    batched: bool,
) -> None:
    reward = {"event_id": event_id, "item_id": item_id, "type": type_}
    prefix = "rewards[0]." if batched else ""
    expected = first_bad(
        [
            (f"{prefix}event_id", id_ok(event_id)),
            (f"{prefix}item_id", id_ok(item_id)),
            (f"{prefix}type", re.fullmatch(r"[A-Za-z0-9_]{1,64}", type_) is not None),
        ]
    )
    watch.before(refused=expected is not None)
    depth = queue_depth(aws["REWARD_QUEUE_URL"])
    status, result = send(api, "rewards", {"rewards": [reward]} if batched else reward)
    if expected is not None:
        assert_refused(status, result, expected)
        assert status == 422
        return
    assert (status, result) == (202, {"accepted": 1})
    assert queue_depth(aws["REWARD_QUEUE_URL"]) == depth + 1


@settings(HYPOTHESIS, max_examples=30)
@given(
    ids=st.lists(hostile_text(), min_size=1, max_size=3, unique=True),
    labels=st.lists(st.tuples(hostile_text(), hostile_text()), min_size=3, max_size=3),
    features=st.lists(OBJECTS, min_size=3, max_size=3),
)
@example(ids=["sku|1:2 3"], labels=[("\x00", "😀")] * 3, features=[{"k": "v\ud800"}] * 3).via(
    "lone surrogate in a catalog feature"
)
def test_hostile_catalog_items_are_refused_or_round_trip(
    aws: dict[str, str],
    api: Api,
    watch: StateWatch,
    *,
    ids: list[str],
    labels: list[tuple[str, str]],
    features: list[dict[str, Any]],
) -> None:
    items = [
        {"id": id_, "category": c, "creator": cr, "features": f}
        for id_, (c, cr), f in zip(ids, labels, features, strict=False)
    ]
    bad: set[str] = set()
    first: str | None = None
    for i, item in enumerate(items):
        item_bad = bad_paths(item["features"], f"items[{i}].features")
        first = first or first_bad(
            [
                (f"items[{i}].id", id_ok(item["id"])),
                ("features", not item_bad),
                (f"items[{i}].category", label_ok(item["category"])),
                (f"items[{i}].creator", label_ok(item["creator"])),
            ]
        )
        bad |= item_bad
    watch.before(refused=first is not None)
    status, result = send(api, "items", {"items": items})
    if first is not None:
        assert_refused(status, result)
        expected = bad if first == "features" else {first}
        assert (status, result["field"] in expected) == (422, True), (expected, result)
        return
    assert (status, result) == (200, {"upserted": len(items)})
    # Ranked by reference, the catalog's items come back exactly
    status, ranked = send(api, "rank", rank_body(ids))
    assert_served(status, ranked, ids, 5)
    record = decision_store.get("acme", ranked["event_id"]).record
    stored = {c.id: (c.category, c.creator, c.features) for c in record.candidates}
    assert stored == {i["id"]: (i["category"], i["creator"], i["features"]) for i in items}
    assert_no_vw_injection(record)


SEEDED = {"", "for-you", "explore"}  # an empty segment is no path parameter at all
PATH_CALLS: list[tuple[Handler, str, str, str]] = [
    (rank_handler, "POST", "/v1/policies/{}/rank", RANK),
    (admin_handler, "GET", "/v1/policies/{}", POLICY),
    (admin_handler, "PUT", "/v1/policies/{}", POLICY),
    (admin_handler, "GET", "/v1/policies/{}/models", "/v1/policies/{policy}/models"),
    (admin_handler, "POST", "/v1/policies/{}/rollback", ROLLBACK),
    (admin_handler, "GET", "/v1/policies/{}/metrics", "/v1/policies/{policy}/metrics"),
    (rewards_handler, "POST", "/v1/events/{}/activate", ACTIVATE),
]


@settings(HYPOTHESIS, max_examples=25)
@given(name=hostile_text(max_size=70).filter(lambda s: "/" not in s and s not in SEEDED))
@example(name="\ud800").via("lone surrogate")
@example(name="for-you\n").via("trailing newline")
@example(name="a" * 3000).via("longer than any storage key")
@example(name="For-You").via("upper case")
@example(name="no-such-policy").via("a valid name nobody has")
def test_hostile_policy_names_and_event_ids_in_the_path(
    aws: dict[str, str], api: Api, watch: StateWatch, name: str
) -> None:
    watch.before(refused=True)
    valid_name = re.fullmatch(POLICY_NAME_PATTERN, name) is not None
    for handler, method, template, resource in PATH_CALLS:
        status, error = call(api, handler, method, template.format(name), resource)
        parameter = "event_id" if "{event_id}" in resource else "policy"
        valid = id_ok(name) if parameter == "event_id" else valid_name
        if method == "PUT":
            # A body-less PUT: an invalid name is named; a valid one reaches the spec check
            assert_refused(status, error, parameter if not valid else "body")
            assert status == 422
        elif not valid:
            assert_refused(status, error, parameter)
            assert (status, error["detail"]) == (404, f"no such {parameter.replace('_', ' ')}")
        else:
            assert_refused(status, error)
            assert status == 404 or (method == "POST" and status == 422), error
