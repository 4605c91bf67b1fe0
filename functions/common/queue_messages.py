"""The bodies of the stack's queue messages, validated strictly on the way in.

- ``RewardMessage``: one webhook post on the reward queue (tenant and its validated rewards).
- ``LearnMessage``: one policy's work on the learn queue (rewards to join, events to close), or
  one chunk of retraining its model after a spec change (``RetrainStep``).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.common.api_models import MAX_REWARDS, MAX_SLATE


class QueuedReward(BaseModel):
    """A reward as the webhook queued it (already validated, with a timestamp and an id).

    It names the rewarded item by id or, as the Personalizer API queues them, by the position
    it was shown at or the app's name of that slot; the learner resolves either on the event.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: str = Field(min_length=1, max_length=256)
    item_id: str | None = Field(None, min_length=1, max_length=256)
    position: int | None = Field(None, ge=1, le=MAX_SLATE)
    slot_id: str | None = Field(None, min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=64)
    value: float | None = None
    final: bool = False
    timestamp: float
    sent_timestamp: float | None = None
    reward_id: str | None = Field(None, max_length=64)  # the webhook's; else derived

    @model_validator(mode="after")
    def _names_one_item(self) -> Self:
        named = [v for v in (self.item_id, self.position, self.slot_id) if v is not None]
        if len(named) != 1:
            raise ValueError("a reward names its item by exactly one of item_id, position, slot_id")
        return self


class RewardMessage(BaseModel):
    """One queued webhook post."""

    model_config = ConfigDict(extra="ignore")

    tenant: str = Field(min_length=1)
    rewards: list[QueuedReward] = Field(min_length=1, max_length=MAX_REWARDS)


class RetrainStep(BaseModel):
    """The chunk of a retrain job to run next (``functions.common.retrain_service``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    job: str = Field(pattern=r"^[0-9a-f]{32}$")
    chunk: int = Field(ge=0, le=10**9)


class LearnMessage(BaseModel):
    """One message of a (tenant, policy) group on the learn queue: work to learn, or one
    retrain chunk (then nothing else)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1)
    policy: str = Field(min_length=1)
    rewards: list[QueuedReward] = Field(default_factory=list)
    close: list[str] = Field(default_factory=list)
    retrain: RetrainStep | None = None

    @model_validator(mode="after")
    def _retrain_alone(self) -> Self:
        if self.retrain is not None and (self.rewards or self.close):
            raise ValueError("a retrain message carries no rewards and no events to close")
        return self
