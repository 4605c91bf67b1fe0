"""VWModel: learning, scoring, exploration, the checksummed envelope and the args allowlist."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from bandit.domain import Candidate
from bandit.errors import ModelError, SpecError
from bandit.serve.features import action_lines, shared_line
from bandit.serve.vw import MAGIC, VWModel, read_envelope
from bandit.serve.vw_args import ALLOWED_FLAGS, validate_vw_args

ARGS = ["--cb_type", "mtr", "-q", "CI"]
KINDS = ("kid", "adult", "senior")
ITEMS = [
    Candidate("cartoon", {"length": 20.0}, category="animation", creator="a"),
    Candidate("thriller", {"length": 120.0}, category="crime", creator="b"),
    Candidate("documentary", {"length": 90.0}, category="history", creator="c"),
    Candidate("sitcom", {"length": 25.0}, category="comedy", creator="a"),
]
ACTIONS = action_lines(ITEMS)
# Each user kind rewards exactly one item: kid -> cartoon, adult -> thriller, senior -> documentary.
FAVOURITE = {kind: index for index, kind in enumerate(KINDS)}


def context_line(kind: str, age: float) -> str:
    return shared_line({"user": {"kind": kind, "age": age}, "device": "ios"})


def train(model: VWModel, rng: np.random.Generator, rounds: int) -> None:
    """Log uniformly random slots (probability 1/4) and learn the click each one earned."""
    for _ in range(rounds):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        chosen = int(rng.integers(len(ACTIONS)))
        reward = 1.0 if chosen == FAVOURITE[kind] else 0.0
        shared = context_line(kind, float(rng.integers(5, 90)))
        model.learn(shared, ACTIONS, chosen=chosen, reward=reward, probability=0.25)


def random_contexts(rng: np.random.Generator, count: int) -> list[str]:
    """Contexts mixing seen and unseen kinds, ages and extra keys."""
    contexts = []
    for index in range(count):
        context: dict[str, object] = {
            "user": {"kind": f"k{int(rng.integers(5))}" if index % 2 else KINDS[index % 3]},
            "age": float(rng.normal(40, 20)),
        }
        if index % 3 == 0:
            context["tags"] = [f"t{int(rng.integers(10))}" for _ in range(3)]
        contexts.append(shared_line(context))
    return contexts


@pytest.fixture(scope="module")
def trained_blob() -> bytes:
    model = VWModel(ARGS)
    train(model, np.random.default_rng(7), rounds=600)
    model.mark_event_learned()
    model.mark_event_learned()
    blob = model.to_bytes()
    model.close()
    return blob


@pytest.fixture
def trained(trained_blob: bytes) -> Iterator[VWModel]:
    model = VWModel.from_bytes(trained_blob)
    yield model
    model.close()


# --------------------------------------------------------------------------------------------
# Learning and scoring
# --------------------------------------------------------------------------------------------


def test_learning_makes_the_rewarded_action_score_highest() -> None:
    # Given a fresh model, which scores every action the same
    model = VWModel(ARGS)
    assert np.array_equal(model.score(context_line("kid", 8.0), ACTIONS), np.zeros(4))

    # When it learns from 600 uniformly logged slots where each kind clicks one item
    train(model, np.random.default_rng(1), rounds=600)

    # Then each kind's favourite scores highest, by a clear margin, even at unseen ages
    for kind, favourite in FAVOURITE.items():
        scores = model.score(context_line(kind, 33.0), ACTIONS)
        assert int(scores.argmax()) == favourite, (kind, scores)
        others = np.delete(scores, favourite)
        assert scores[favourite] - others.max() > 0.5, (kind, scores)
    assert model.examples_learned == 600
    model.close()


def test_score_is_minus_predicted_cost_so_reward_one_approaches_one() -> None:
    model = VWModel(ARGS)
    shared = context_line("adult", 30.0)
    for _ in range(200):
        model.learn(shared, ACTIONS, chosen=1, reward=1.0, probability=0.25)
        model.learn(shared, ACTIONS, chosen=2, reward=0.0, probability=0.25)
    scores = model.score(shared, ACTIONS)
    assert scores[1] == pytest.approx(1.0, abs=0.05)
    assert scores[2] == pytest.approx(0.0, abs=0.05)
    model.close()


def test_score_of_no_actions_is_empty() -> None:
    model = VWModel(ARGS)
    assert model.score("shared |", []).shape == (0,)
    model.close()


@pytest.mark.parametrize("explore", [False, True])
def test_native_calls_learn_and_predict_exactly_as_vws_python_api(explore: bool) -> None:
    # VWModel drives VW's native multi-example calls directly; the result must be what
    # Workspace.learn/predict give on the same text, to the last bit.
    from vowpalwabbit import Workspace

    reduction = "--cb_explore_adf" if explore else "--cb_adf"
    reference = Workspace(arg_list=[reduction, "--quiet", *ARGS])
    model = VWModel(ARGS, explore=explore)
    rng = np.random.default_rng(4)
    for _ in range(300):
        kind = KINDS[int(rng.integers(3))]
        chosen = int(rng.integers(len(ITEMS)))
        reward = 1.0 if FAVOURITE[kind] == chosen else 0.0
        shared = shared_line({"kind": kind})
        lines = [shared, *ACTIONS]
        lines[chosen + 1] = f"0:{-reward!r}:0.25 {ACTIONS[chosen]}"
        reference.learn(lines)
        model.learn(shared, ACTIONS, chosen=chosen, reward=reward, probability=0.25)
    for kind in KINDS:
        shared = shared_line({"kind": kind})
        expected = np.asarray(reference.predict([shared, *ACTIONS]), dtype=np.float64)
        got = model.score(shared, ACTIONS)
        assert np.array_equal(got, expected if explore else -expected)
        assert len(set(got.tolist())) > 1  # trained: the scores differ


def test_mark_event_learned_counts_events_separately_from_slots() -> None:
    model = VWModel(ARGS)
    shared = context_line("kid", 9.0)
    model.learn(shared, ACTIONS, chosen=0, reward=1.0, probability=0.5)
    model.learn(shared, ACTIONS, chosen=3, reward=0.0, probability=0.5)
    model.mark_event_learned()
    assert (model.examples_learned, model.events_learned) == (2, 1)
    model.close()


@pytest.mark.parametrize("probability", [0.0, -0.1, 1.0000001, 2.0, math.nan])
def test_learn_rejects_impossible_probabilities(probability: float) -> None:
    model = VWModel(ARGS)
    with pytest.raises(ValueError, match="probability"):
        model.learn(
            context_line("kid", 9.0), ACTIONS, chosen=0, reward=1.0, probability=probability
        )
    assert model.examples_learned == 0
    model.close()


def test_learn_accepts_probability_one() -> None:
    model = VWModel(ARGS)
    model.learn(context_line("kid", 9.0), ACTIONS, chosen=0, reward=1.0, probability=1.0)
    assert model.examples_learned == 1
    model.close()


@pytest.mark.parametrize(
    "explore_args",
    [["--epsilon", "0.2"], ["--squarecb"], ["--softmax", "--lambda", "5"], ["--cover", "3"]],
)
def test_explore_returns_a_pmf_over_the_actions(explore_args: list[str]) -> None:
    # Given an exploring model that has learned the kid's favourite
    model = VWModel([*ARGS, *explore_args], explore=True)
    train(model, np.random.default_rng(3), rounds=300)

    # When it scores a kid's context
    pmf = model.score(context_line("kid", 9.0), ACTIONS)

    # Then it returns one probability per action, summing to 1
    assert pmf.shape == (len(ACTIONS),)
    assert np.all(pmf >= 0.0)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-6)
    model.close()


def test_epsilon_greedy_pmf_puts_the_greedy_mass_on_the_favourite() -> None:
    model = VWModel([*ARGS, "--epsilon", "0.2"], explore=True)
    train(model, np.random.default_rng(4), rounds=600)
    pmf = model.score(context_line("senior", 70.0), ACTIONS)
    # epsilon spread uniformly over 4 actions: 0.05 each, plus 0.8 on the greedy one
    assert pmf == pytest.approx([0.05, 0.05, 0.85, 0.05], abs=1e-6)
    model.close()


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------


def test_round_trip_gives_identical_predictions_and_keeps_counters(trained_blob: bytes) -> None:
    # Given a model trained and serialized
    original = VWModel.from_bytes(trained_blob)

    # When it is serialized again and loaded
    reloaded = VWModel.from_bytes(original.to_bytes())

    # Then it keeps its settings and counters
    assert (reloaded.examples_learned, reloaded.events_learned) == (600, 2)
    assert reloaded.args == ARGS
    assert reloaded.explore is False

    # And predicts bit-for-bit the same on many contexts, including unseen features
    for shared in random_contexts(np.random.default_rng(11), 60):
        assert np.array_equal(original.score(shared, ACTIONS), reloaded.score(shared, ACTIONS))
    original.close()
    reloaded.close()


def test_learning_continues_identically_after_reload(trained_blob: bytes) -> None:
    # Given the same model kept in memory and reloaded from bytes
    in_memory = VWModel.from_bytes(trained_blob)
    reloaded = VWModel.from_bytes(in_memory.to_bytes())

    # When both learn the same 200 new slots, where adults now prefer the sitcom
    for model in (in_memory, reloaded):
        rng = np.random.default_rng(5)
        for _ in range(200):
            chosen = int(rng.integers(len(ACTIONS)))
            model.learn(
                context_line("adult", 40.0),
                ACTIONS,
                chosen=chosen,
                reward=1.0 if chosen == 3 else 0.0,
                probability=0.25,
            )

    # Then the reloaded model learned (adults flipped to the sitcom) exactly like the original
    assert int(reloaded.score(context_line("adult", 40.0), ACTIONS).argmax()) == 3
    assert reloaded.examples_learned == 800
    for shared in random_contexts(np.random.default_rng(12), 30):
        assert np.array_equal(in_memory.score(shared, ACTIONS), reloaded.score(shared, ACTIONS))
    in_memory.close()
    reloaded.close()


def test_exploring_model_round_trips(trained_blob: bytes) -> None:
    model = VWModel([*ARGS, "--epsilon", "0.1"], explore=True)
    train(model, np.random.default_rng(6), rounds=100)
    reloaded = VWModel.from_bytes(model.to_bytes())
    assert reloaded.explore is True
    shared = context_line("kid", 9.0)
    assert np.array_equal(model.score(shared, ACTIONS), reloaded.score(shared, ACTIONS))
    model.close()
    reloaded.close()


def test_envelope_header_describes_the_model(trained_blob: bytes) -> None:
    header, blob = read_envelope(trained_blob)
    assert trained_blob.startswith(MAGIC)
    assert header["args"] == ARGS
    assert header["explore"] is False
    assert (header["examples_learned"], header["events_learned"]) == (600, 2)
    assert header["size"] == len(blob)
    assert trained_blob.endswith(blob)


@pytest.mark.parametrize("mask", [0xFF, 0x01, 0x20])
def test_any_flipped_byte_is_rejected(trained_blob: bytes, mask: int) -> None:
    # Given an intact blob, when any single byte of it is flipped (magic, header or weights)
    rejected = 0
    for position in range(len(trained_blob)):
        corrupt = bytearray(trained_blob)
        corrupt[position] ^= mask

        # Then loading it raises ModelError: it never loads and never fails another way
        with pytest.raises(ModelError):
            VWModel.from_bytes(bytes(corrupt))
        rejected += 1
    assert rejected == len(trained_blob) > 500


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SERENDIP-VW1",
        b"\x07\x00\x00\x009.11.9\x00",
        b'{"args": []}\n',
        b"SERENDIP-VW2\n{}\n",
        MAGIC + b"not json\n",
        MAGIC + b"[1, 2]\n",
        MAGIC + b'{"args": []}',
    ],
    ids=["empty", "magic-only", "raw-vw", "json", "other-version", "bad-json", "list", "no-nl"],
)
def test_non_serendip_or_truncated_blobs_are_rejected(data: bytes) -> None:
    with pytest.raises(ModelError):
        VWModel.from_bytes(data)


def test_a_raw_vw_model_is_not_a_serendip_blob(trained_blob: bytes) -> None:
    _, raw = read_envelope(trained_blob)
    with pytest.raises(ModelError, match="not a serendip model"):
        VWModel.from_bytes(raw)


def test_truncated_blob_fails_its_checksum(trained_blob: bytes) -> None:
    with pytest.raises(ModelError, match="checksum"):
        VWModel.from_bytes(trained_blob[:-1])
    with pytest.raises(ModelError, match="checksum"):
        VWModel.from_bytes(trained_blob + b"\x00")


def envelope(header: dict[str, object], raw: bytes) -> bytes:
    """A blob in the documented format: checksum over canonical header fields + VW bytes."""
    fields = {key: value for key, value in header.items() if key != "sha256"}
    fields["size"] = len(raw)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + b"\n" + raw)
    full = {**fields, "sha256": digest.hexdigest()}
    return MAGIC + json.dumps(full, sort_keys=True).encode() + b"\n" + raw


def test_envelope_format_is_as_documented(trained_blob: bytes) -> None:
    header, raw = read_envelope(trained_blob)
    assert envelope(header, raw) == trained_blob


def test_header_is_covered_by_the_checksum(trained_blob: bytes) -> None:
    # Given a header whose counters were edited but whose checksum only covers the VW bytes
    header, raw = read_envelope(trained_blob)
    forged = {**header, "examples_learned": 1, "sha256": hashlib.sha256(raw).hexdigest()}
    data = MAGIC + json.dumps(forged, sort_keys=True).encode() + b"\n" + raw

    # Then it is rejected
    with pytest.raises(ModelError, match="checksum"):
        VWModel.from_bytes(data)


def test_non_canonical_header_is_rejected(trained_blob: bytes) -> None:
    # Same content, different bytes (a tab instead of a space): the checksum must cover bytes
    spaced = trained_blob.replace(b'{"args": ', b'{"args":\t', 1)
    assert spaced != trained_blob
    with pytest.raises(ModelError, match="canonical"):
        VWModel.from_bytes(spaced)


def test_intact_envelope_around_non_vw_bytes_is_a_model_error(trained_blob: bytes) -> None:
    header, _ = read_envelope(trained_blob)
    with pytest.raises(ModelError, match="VW cannot load"):
        VWModel.from_bytes(envelope(header, b"garbage" * 20))


def test_model_loaded_with_the_other_reduction_is_rejected(trained_blob: bytes) -> None:
    # Given a cb_adf model whose (checksummed) header claims it explores
    header, raw = read_envelope(trained_blob)
    with pytest.raises(ModelError, match="--cb_explore_adf"):
        VWModel.from_bytes(envelope({**header, "explore": True}, raw))


# --------------------------------------------------------------------------------------------
# The args allowlist
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [
        "-f",
        "-d",
        "--data",
        "-i",
        "--initial_regressor",
        "--cache_file",
        "--readable_model",
        "--invert_hash",
        "--audit",
        "-c",
        "--daemon",
        "--port",
        "--final_regressor",
        "--save_resume",
        "--cb_explore_adf",
        "--no_such_flag",
        "-q=CI",
        "--cb_type=mtr",
        "",
    ],
)
def test_disallowed_flags_are_rejected_naming_their_index(flag: str) -> None:
    # Given an otherwise valid argument list with the flag third
    args = ["--cb_type", "mtr", flag, "/tmp/model.vw"]

    # Then validation and the model constructor both name vw.args[2]
    with pytest.raises(SpecError) as caught:
        validate_vw_args(args)
    assert caught.value.field == "vw.args[2]"
    assert "not allowed" in caught.value.message
    with pytest.raises(SpecError) as caught:
        VWModel(args)
    assert caught.value.field == "vw.args[2]"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["-q", "C|I"], "vw.args[1]"),
        (["-q", "C"], "vw.args[1]"),
        (["-q", "CI", "--quadratic", "C I"], "vw.args[3]"),
        (["-b", "40"], "vw.args[1]"),
        (["-b", "0"], "vw.args[1]"),
        (["--bit_precision", "23"], "vw.args[1]"),
        (["--cb_type", "evil"], "vw.args[1]"),
        (["--cb_type", "mtr -f /tmp/x"], "vw.args[1]"),
        (["--cb_type", "mtr\n"], "vw.args[1]"),
        (["-l", "fast"], "vw.args[1]"),
        (["-l", "nan"], "vw.args[1]"),
        (["--epsilon", "1e"], "vw.args[1]"),
        (["--random_seed", "-1"], "vw.args[1]"),
        (["--random_seed", "1234567"], "vw.args[1]"),
        (["--ignore", "AB"], "vw.args[1]"),
        (["--noconstant", "-q"], "vw.args[1]"),
        (["--cb_type"], "vw.args[0]"),
    ],
)
def test_bad_values_are_rejected_naming_the_value(args: list[str], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_vw_args(args)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (["-q", "::"], "vw.args[1]", "wildcard"),
        (["-q", "C:"], "vw.args[1]", "wildcard"),
        (["--cb_type", "mtr", "--interactions", "::::"], "vw.args[3]", "wildcard"),
        (["--cubic", ":::"], "vw.args[1]", "wildcard"),
        (["--interactions", "CCII"], "vw.args[1]", "invalid value"),  # order 4
        ([t for n in range(9) for t in ("-q", "CI")], "vw.args[16]", "at most 8 interaction"),
        ([*["--cubic", "CCI"] * 4, *["-q", "CI"] * 4, "--interactions", "CI"], "vw.args[16]",
         "at most 8 interaction"),
        (["-b", "23"], "vw.args[1]", "invalid value"),
        (["-b", "20", "--bag", "32"], "vw.args[0]", "needs 2.25 weights"),
        (["--bit_precision", "22", "--cover", "4"], "vw.args[0]", "needs 2.25 weights"),
        (["--rnd", "32", "-b", "20"], "vw.args[2]", "needs 2.25 weights"),
        (["--bag", "32", "-b", "19", "--cover", "64"], "vw.args[5]", "invalid value"),
    ],
)  # fmt: skip
def test_what_makes_cost_explode_is_capped(args: list[str], field: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        validate_vw_args(args)
    assert caught.value.field == field


def test_the_largest_allowed_ensembles_fit_the_weight_cap() -> None:
    assert validate_vw_args(["-b", "19", "--bag", "32"]) == ["-b", "19", "--bag", "32"]
    assert validate_vw_args(["--cover", "32"]) == ["--cover", "32"]  # 33 policies at -b 18
    assert validate_vw_args(["-b", "22", "--rnd", "4"]) == ["-b", "22", "--rnd", "4"]


def test_flags_missing_their_value_say_so() -> None:
    with pytest.raises(SpecError, match="needs a value") as caught:
        validate_vw_args(["--cb_type", "mtr", "-q"])
    assert caught.value.field == "vw.args[2]"


def test_errors_use_the_given_field_name() -> None:
    with pytest.raises(SpecError) as caught:
        validate_vw_args(["--epsilon", "0.1", "-f", "x"], "vw.explore_args")
    assert caught.value.field == "vw.explore_args[2]"


# As many interaction terms as the allowlist takes, up to its longest order.
EIGHT_TERMS = ["-q", "CI", "-q", "CC", "-q", "II", "--cubic", "CCI"]
EIGHT_TERMS += ["--interactions", "CII", "--interactions", "III", "--interactions", "CCC"]
EIGHT_TERMS += ["--quadratic", "IC"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--cb_type", "mtr", "-q", "CI", "--learning_rate", "0.5", "--power_t", "0.3"],
        ["--cb_type", "dr", "--interactions", "CIC", "-b", "22", "--l2", "1e-6"],
        ["--cb_type", "ips", "--cubic", "CII", "-l", ".5", "--noconstant", "--coin"],
        ["--epsilon", "0.05", "--random_seed", "42", "--quadratic", "CC"],
        ["-b", "22", *EIGHT_TERMS],
    ],
)
def test_allowed_args_are_returned_unchanged_and_vw_accepts_them(args: list[str]) -> None:
    assert validate_vw_args(args) == args
    model = VWModel(args)
    model.learn(context_line("kid", 9.0), ACTIONS, chosen=0, reward=1.0, probability=0.5)
    assert np.all(np.isfinite(model.score(context_line("kid", 9.0), ACTIONS)))
    model.close()


def test_no_allowed_flag_touches_files() -> None:
    file_flags = {"-f", "-d", "-i", "-c", "--data", "--cache_file", "--readable_model"}
    file_flags |= {"--invert_hash", "--initial_regressor", "--final_regressor", "--daemon"}
    assert not file_flags & set(ALLOWED_FLAGS)
