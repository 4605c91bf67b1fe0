"""Rank, multi-slot rank, reward and activate of the Personalizer API, over Serendip's rank
service, reward queue and activation.

- **Rank** is a one-slot Serendip slate. ``ranking`` lists every action: the chosen one
  (``rewardActionId``) first, then the others by the probability the policy gave them for that
  one slot, excluded actions last with probability 0. Those probabilities are exact: they are
  the distribution the slot was drawn from, and the chosen one's is the probability logged.
- **Multi-slot rank** is a Serendip slate with one position per slot, in the request's order:
  each slot gets a distinct action, drawn with the exact probability conditional on the slots
  before it (returned as ``probability``, which Personalizer never gave). A slot's
  ``excludedActions`` keep actions out of that slot only; its ``baselineAction`` is logged as
  the app's own choice; its ``features`` join the context of that slot alone (namespace
  ``C_slot``), so the policy learns what suits each slot.
- **Rewards** (in [-1, 1]) go on the reward queue as they are, one per post, for the event's
  first slot or for the named slot; the learner finds the item on the event. Like Personalizer,
  the call answers 204 at once: a reward for an unknown event or slot is counted as an orphan
  (``GET /v1/events/{event_id}`` shows what became of an event).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from bandit.domain import Candidate
from bandit.errors import FieldError
from bandit.serve.ranker import RankResult
from functions.common import reward_service
from functions.common.api_models import check_features
from functions.common.auth import Principal
from functions.common.personalizer.contract import (
    MultiSlotRankRequest,
    MultiSlotRewardRequest,
    RankableAction,
    RankRequest,
    RewardRequest,
)
from functions.common.personalizer.features import merge_feature_list
from functions.common.personalizer.resource import with_policy
from functions.common.rank_service import RankService
from functions.common.recommend import Decision

REWARD_TYPE = "reward"


def _features(items: Sequence[Any] | None, field: str) -> dict[str, Any]:
    """One feature object from Personalizer's list, within Serendip's caps (depth, count,
    string length, finite numbers), or ``FieldError`` naming the path below ``field``."""
    merged = merge_feature_list(items, field)
    try:
        return check_features(merged)
    except FieldError as exc:
        raise FieldError(f"{field}{exc.field}", exc.message) from exc


def _candidates(actions: Sequence[RankableAction]) -> list[Candidate]:
    seen: set[str] = set()
    candidates: list[Candidate] = []
    for index, action in enumerate(actions):
        if action.id in seen:
            raise FieldError(f"actions[{index}].id", f"action id '{action.id}' is given twice")
        seen.add(action.id)
        features = _features(action.features, f"actions[{index}].features")
        candidates.append(Candidate(action.id, features))
    return candidates


def _extras(answer: dict[str, Any]) -> dict[str, Any]:
    """What Serendip adds to Personalizer's answer (both SDKs pass extra fields through)."""
    return {
        "policy": answer["policy"],
        "modelVersion": answer["model_version"],
        "logged": answer["logged"],
        "explored": [slot["explored"] for slot in answer["slate"]],
    }


def rank(service: RankService, principal: Principal, body: RankRequest) -> dict[str, Any]:
    """``POST /rank``: one slot, with the probability of every action for it."""
    principal.require("rank")
    candidates = _candidates(body.actions)
    ids = {c.id for c in candidates}
    excluded = [i for i in body.excludedActions or () if i in ids]
    allowed = [c.id for c in candidates if c.id not in set(excluded)]
    if not allowed:
        raise FieldError("excludedActions", "every action is excluded; at least one must remain")
    decision = Decision(
        context=_features(body.contextFeatures, "contextFeatures"),
        candidates=candidates,
        user_id=None,
        slate_size=1,
        exclude=excluded,
        defer_activation=bool(body.deferActivation),
        event_id=body.eventId,
        baseline=allowed[:1],
        keep_distributions=True,
    )
    answer, result = with_policy(
        principal, lambda policy: service.decide(principal.tenant, policy, decision)
    )
    chosen = result.slots[0].item_id
    return {
        "ranking": _ranking(result, chosen, set(excluded)),
        "eventId": answer["event_id"],
        "rewardActionId": chosen,
        "serendip": _extras(answer),
    }


def _ranking(result: RankResult, chosen: str, excluded: set[str]) -> list[dict[str, Any]]:
    """Every action with its probability for the slot: the chosen first, then by probability
    (ties in request order), the excluded last (with probability 0, as may be allowed actions
    when the budget gives this rank no exploration)."""
    candidates = result.request.candidates
    distribution = result.distributions[0]
    order = sorted(
        range(len(candidates)),
        key=lambda i: (
            candidates[i].id != chosen,
            candidates[i].id in excluded,
            -float(distribution[i]),
            i,
        ),
    )
    return [{"id": candidates[i].id, "probability": float(distribution[i])} for i in order]


def multislot_rank(
    service: RankService, principal: Principal, body: MultiSlotRankRequest
) -> dict[str, Any]:
    """``POST /multislot/rank``: a distinct action for each slot, in the slots' order."""
    principal.require("rank")
    candidates = _candidates(body.actions)
    ids = {c.id for c in candidates}
    slot_features = _check_slots(body, ids)
    if len(body.slots) > len(candidates):
        detail = f"{len(body.slots)} slots need as many distinct actions; {len(candidates)} given"
        raise FieldError("slots", detail)
    exclude_at = {
        position: [i for i in slot.excludedActions or () if i in ids]
        for position, slot in enumerate(body.slots, start=1)
        if slot.excludedActions
    }
    decision = Decision(
        context=_features(body.contextFeatures, "contextFeatures"),
        candidates=candidates,
        user_id=None,
        slate_size=len(body.slots),
        exclude=(),
        defer_activation=bool(body.deferActivation),
        event_id=body.eventId,
        exclude_at=exclude_at,
        slot_ids=[slot.id for slot in body.slots],
        baseline=[slot.baselineAction for slot in body.slots],
        slot_features=slot_features if any(slot_features) else None,
    )
    answer, _ = with_policy(
        principal, lambda policy: service.decide(principal.tenant, policy, decision)
    )
    shown = {slot["position"]: slot for slot in answer["slate"]}
    slots = []
    for position, slot in enumerate(body.slots, start=1):
        drawn = shown.get(position)
        slots.append(
            {
                "id": slot.id,
                "rewardActionId": None if drawn is None else drawn["id"],
                "probability": None if drawn is None else drawn["probability"],
            }
        )
    return {"slots": slots, "eventId": answer["event_id"], "serendip": _extras(answer)}


def _check_slots(body: MultiSlotRankRequest, ids: set[str]) -> list[dict[str, Any]]:
    """Personalizer's rules for slots: unique ids, and a unique, offered, allowed baseline.
    Returns each slot's features as one object (empty where it gave none)."""
    slot_ids: set[str] = set()
    features: list[dict[str, Any]] = []
    baselines: set[str] = set()
    for index, slot in enumerate(body.slots):
        field = f"slots[{index}]"
        if slot.id in slot_ids:
            raise FieldError(f"{field}.id", f"slot id '{slot.id}' is given twice")
        slot_ids.add(slot.id)
        baseline = slot.baselineAction
        if baseline not in ids:
            raise FieldError(f"{field}.baselineAction", f"'{baseline}' is not one of the actions")
        if baseline in baselines:
            raise FieldError(
                f"{field}.baselineAction", f"'{baseline}' is the baseline of another slot"
            )
        if baseline in (slot.excludedActions or ()):
            raise FieldError(f"{field}.baselineAction", "the baseline action is excluded")
        baselines.add(baseline)
        features.append(_features(slot.features, f"{field}.features"))
    return features


def _reward(event_id: str, value: float, **names: Any) -> dict[str, Any]:
    """A queued reward of the Personalizer API: one per post, so each one counts (as in
    Personalizer, where two posts of 0.5 sum to 1 under ``sum``)."""
    return {
        "event_id": event_id,
        "item_id": None,
        "position": None,
        "slot_id": None,
        **names,
        "type": REWARD_TYPE,
        "value": value,
        "final": False,
        "timestamp": time.time(),
        "sent_timestamp": None,
        "reward_id": uuid.uuid4().hex,
    }


def reward(principal: Principal, event_id: str, body: RewardRequest) -> None:
    """``POST /events/{eventId}/reward``: the reward of the event's one slot."""
    principal.require("reward")
    reward_service.queue(principal.tenant, [_reward(event_id, body.value, position=1)])


def multislot_reward(principal: Principal, event_id: str, body: MultiSlotRewardRequest) -> None:
    """``POST /multislot/events/{eventId}/reward``: one reward per named slot."""
    principal.require("reward")
    rewards = [_reward(event_id, r.value, slot_id=r.slotId) for r in body.reward]
    reward_service.queue(principal.tenant, rewards)


def activate(principal: Principal, event_id: str) -> None:
    """``POST /events/{eventId}/activate`` (and the multi-slot one): the event was shown."""
    reward_service.activate(principal, event_id)
