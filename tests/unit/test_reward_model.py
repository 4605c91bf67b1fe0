"""The built-in reward model: cross-fitted, and DM and DR recover a known policy's value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bandit.decision_log import DecisionRecord, LoggedReward, write_jsonl
from bandit.evaluate.ope import estimate
from bandit.evaluate.replay import FirstSlotTerms, evaluate
from bandit.evaluate.reward_model import (
    first_slot_lines,
    fit_reward_model,
    fold_of,
    regression_features,
)
from bandit.evaluate.slot_draws import slot_distributions, slot_probabilities
from bandit.serve.ranker import Ranker
from bandit.simulate.arena import BanditContender
from bandit.simulate.simulation import NewsScenario, SimRequest
from bandit.spec import parse_spec
from local.cli import main

SEGMENTS = {"segments": [{"name": "all"}]}
# Logs a model that cannot express the news world's (user, time, item) likes: it keeps exploring
# on 30% of requests and exploits whatever -q CI learned.
LOGGING = parse_spec(
    {
        "name": "logging",
        "slate_size": 1,
        "vw": {"args": ["-q", "CI"]},
        "exploration": {"algorithm": "epsilon_greedy", "budget": 0.3},
        "cold_start": SEGMENTS,
    }
)
UNIFORM_SETTINGS = {
    "name": "uniform",
    "slate_size": 1,
    "exploration": {"algorithm": "epsilon_greedy", "budget": 1.0},
    "cold_start": SEGMENTS,
}
UNIFORM = parse_spec(UNIFORM_SETTINGS)
NEWS = NewsScenario()
EVENTS = 600
SEEDS = range(6)


def news_logs(
    events: int, seed: int, candidates: tuple[str, ...] = NewsScenario.ARTICLES
) -> list[DecisionRecord]:
    """The logging policy learning online on the news world, one decision record per request."""
    rng = np.random.default_rng(seed)
    offered = tuple(c for c in NEWS.candidates() if c.id in candidates)
    contender = BanditContender(LOGGING)
    logs = []
    for t in range(events):
        context = NEWS.context(rng)
        request = SimRequest(context["user"]["name"], context, offered, 1.7e9 + t, t)
        choice = contender.choose(request, f"news-{seed}-{t}", 1)
        clicks = [NEWS.reward(context, item) == 1.0 for item in choice.item_ids]
        logs.append(contender.closed_record(request, choice, clicks))
        contender.observe(request, choice, clicks)
    return logs


def uniform_truth(records: list[DecisionRecord]) -> float:
    """Uniform's value on these requests, from the simulator's own reward function."""
    return float(
        np.mean(
            [
                np.mean([NEWS.reward(r.context, c.id) for c in r.candidates])
                for r in records
                if r.activated
            ]
        )
    )


@pytest.fixture(scope="module")
def replays() -> list[tuple[float, FirstSlotTerms]]:
    """Per seed: uniform's true value and the DR replay's first-slot terms."""
    out = []
    for seed in SEEDS:
        logs = news_logs(EVENTS, seed)
        terms = evaluate(logs, {"uniform": UNIFORM}, method="dr").candidates[0].terms
        assert terms is not None and terms.reward_hat is not None
        out.append((uniform_truth(logs), terms))
    return out


def estimates(terms: FirstSlotTerms, method: str) -> float:
    return estimate(
        terms.rewards,
        terms.logged,
        terms.target,
        method,  # type: ignore[arg-type]
        reward_hat=terms.reward_hat,
        reward_hat_target=terms.reward_hat_target,
    ).value


def test_dm_and_dr_recover_the_true_value_of_a_known_policy(
    replays: list[tuple[float, FirstSlotTerms]],
) -> None:
    # Given logs of an exploiting policy, and uniform as the target (exactly one liked article
    # of 7 per request: its true value is 1/7)
    for truth, terms in replays:
        assert truth == pytest.approx(1 / 7)
        # Then the model-based estimates land next to the truth on every seed
        assert estimates(terms, "dr") == pytest.approx(truth, abs=0.01)
        assert estimates(terms, "dm") == pytest.approx(truth, abs=0.015)
        # And the reward model has learned the world: f is near the logged item's real reward
        assert np.mean(np.abs(terms.reward_hat - terms.rewards)) < 0.05  # type: ignore[operator]


def test_dr_varies_far_less_across_seeds_than_ips(
    replays: list[tuple[float, FirstSlotTerms]],
) -> None:
    ips = np.array([estimates(terms, "ips") for _, terms in replays])
    dr = np.array([estimates(terms, "dr") for _, terms in replays])
    # IPS swings by a couple of points of CTR with these weights (up to 5)
    assert ips.std(ddof=1) > 0.008
    # DR's correction is small where the model is right, so it spreads at most a fifth as much
    assert dr.std(ddof=1) < 0.2 * ips.std(ddof=1)


def test_the_replay_api_gives_dm_and_dr_estimates() -> None:
    logs = news_logs(300, seed=11)
    truth = uniform_truth(logs)
    for method, tolerance in (("dr", 0.03), ("dm", 0.03)):
        value = evaluate(logs, {"uniform": UNIFORM}, method=method).candidates[0].first_slot
        assert value.method == method
        assert value.value == pytest.approx(truth, abs=tolerance)
        assert value.low < value.value < value.high


def test_the_first_slot_distribution_is_the_candidates_full_distribution() -> None:
    # Given a uniform candidate over 7 articles
    record = news_logs(1, seed=0)[0]
    ranker = Ranker(UNIFORM, clock=lambda: 0.0)
    probabilities, first = slot_distributions(ranker, record)
    # Then the first slot's distribution is 1/7 each, and agrees with the slot probabilities
    assert first == pytest.approx(np.full(7, 1 / 7))
    assert probabilities == slot_probabilities(ranker, record) == pytest.approx([1 / 7])


def test_an_event_is_predicted_only_by_the_model_that_never_saw_it() -> None:
    logs = news_logs(200, seed=5)
    model = fit_reward_model(logs, LOGGING, folds=3)
    every = {record.event_id for record in logs}
    for fold in range(3):
        outside = {e for e in every if fold_of(e, 3) != fold}
        # Each fold's model learned exactly the events outside it
        assert model.training_events[fold] == outside
    for record in logs:
        fold = model.fold(record.event_id)
        assert record.event_id not in model.training_events[fold]
    model.close()


def test_cross_fitting_keeps_an_events_own_reward_out_of_its_prediction() -> None:
    # Given a log in which one event showed an article no other event offers, and it was clicked
    logs = news_logs(200, seed=6)
    odd = logs[100]
    shown = odd.slate[0].item_id
    candidates = [
        c.model_copy(update={"id": "zebra", "category": "zebra"}) if c.id == shown else c
        for c in odd.candidates
    ]
    click = LoggedReward(item_id="zebra", type="click", timestamp=odd.timestamp + 1.0)
    unique = odd.model_copy(
        update={
            "candidates": candidates,
            "slate": [odd.slate[0].model_copy(update={"item_id": "zebra"})],
            "rewards": [click],
        }
    )
    log = [unique if r.event_id == odd.event_id else r for r in logs]
    # When the reward model is fitted on it
    model = fit_reward_model(log, LOGGING)
    index = [c.id for c in candidates].index("zebra")
    shared, lines = first_slot_lines(unique)
    features = regression_features(shared, lines[index])
    own = model.fold(odd.event_id)
    other = (own + 1) % model.folds
    # Then the event's prediction comes from the model that never saw the click
    assert odd.event_id not in model.training_events[own]
    assert odd.event_id in model.training_events[other]
    assert model.predict(unique)[index] == pytest.approx(model.models[own].predict(features))
    # which has nothing to say about the unique article; the model that learned it would
    # have handed the event its own reward back
    assert model.models[other].predict(features) > model.models[own].predict(features) + 0.2
    model.close()


@given(st.text(min_size=1, max_size=40), st.integers(min_value=2, max_value=10))
def test_folds_are_stable_and_in_range(event_id: str, folds: int) -> None:
    fold = fold_of(event_id, folds)
    assert 0 <= fold < folds
    assert fold_of(event_id, folds) == fold


def test_a_log_with_a_single_action_per_event_still_works() -> None:
    # Given events that each offer one article only (every probability is 1)
    logs = news_logs(120, seed=3, candidates=("politics",))
    observed = np.mean([float(bool(r.rewards)) for r in logs])
    # Then DR is the mean observed reward exactly (w = 1 and g = f), and DM is a valid reward
    dr = evaluate(logs, {"uniform": UNIFORM}, method="dr").candidates[0].first_slot
    dm = evaluate(logs, {"uniform": UNIFORM}, method="dm").candidates[0].first_slot
    assert dr.value == pytest.approx(observed, abs=1e-9)
    assert 0.0 <= dm.value <= 1.0
    assert dm.value == pytest.approx(observed, abs=0.1)


def test_a_log_with_no_seen_slot_is_refused_with_a_clear_error() -> None:
    logs = [r.model_copy(update={"seen": [], "rewards": []}) for r in news_logs(20, seed=1)]
    with pytest.raises(ValueError, match="records: no seen slot"):
        fit_reward_model(logs, LOGGING)
    with pytest.raises(ValueError, match="first slot was seen"):
        evaluate(logs, {"uniform": UNIFORM}, method="dr")


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"folds": 1}, "folds"), ({"folds": 2.5}, "folds"), ({"passes": 0}, "passes")],
)
def test_bad_settings_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        fit_reward_model(news_logs(10, seed=1), LOGGING, **changes)  # type: ignore[arg-type]


def test_an_unknown_method_is_refused_before_any_replay() -> None:
    with pytest.raises(ValueError, match=r"^method: must be one of .*dm, dr"):
        evaluate(news_logs(5, seed=1), {"uniform": UNIFORM}, method="best")  # type: ignore[arg-type]


def test_dm_is_the_mean_of_the_model_terms() -> None:
    value = estimate([1.0, 0.0], [0.5, 0.5], [1.0, 0.0], "dm", reward_hat_target=[0.2, 0.4])
    assert value.value == pytest.approx(0.3)
    assert value.method == "dm" and value.n == 2
    assert value.low < 0.3 < value.high
    with pytest.raises(ValueError, match=r"^reward_hat_target: required by method 'dm'"):
        estimate([1.0], [0.5], [1.0], "dm")


def test_serendip_evaluate_takes_the_method_and_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a decision log file and a candidate spec file
    path = tmp_path / "decisions.jsonl"
    with path.open("w", encoding="utf-8") as sink:
        write_jsonl(news_logs(300, seed=2), sink)
    spec_path = tmp_path / "uniform.yaml"
    spec_path.write_text(yaml.safe_dump(UNIFORM_SETTINGS), encoding="utf-8")
    # When ``serendip evaluate --method dr`` runs
    assert (
        main(["evaluate", "--logs", str(path), "--policy", str(spec_path), "--method", "dr"]) == 0
    )
    out = capsys.readouterr().out
    # Then it says which estimator it used, and its estimate is near uniform's 1/7
    assert "first-slot estimator: dr" in out
    value = float(out.split("estimated first-slot value ")[1].split()[0])
    assert value == pytest.approx(1 / 7, abs=0.03)
    # And an unknown method is refused by the parser, naming the flag
    with pytest.raises(SystemExit):
        main(["evaluate", "--logs", str(path), "--policy", str(spec_path), "--method", "best"])
    assert "--method" in capsys.readouterr().err
