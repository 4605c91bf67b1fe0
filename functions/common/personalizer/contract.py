"""Request bodies of the Personalizer API (its field names), with its limits and Serendip's.

Personalizer's own limits hold where its spec states them: ids and event ids of at most 256
characters, ``arguments`` of at most 1,024, rewards in [-1, 1], ``defaultReward`` in [-1, 1],
``explorationPercentage`` in [0, 1]. Serendip is more generous in one place: a rank may offer
up to ``MAX_ACTIONS`` actions (Personalizer: 50); slots stay at most 50. Fields Personalizer
ignored are ignored here too (its clients send none), and every value is checked for type.
One field is Serendip's own: an evaluation's ``estimator`` (``snips``, the default, or ``dr``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from functions.common.api_models import ID_PATTERN, MAX_CANDIDATES, MAX_SLATE

# An event id is named in reward and activate URLs: no "/" (it would split the path).
EVENT_ID_PATTERN = r"^[^\x00-\x1f/]{1,256}$"
MAX_ACTIONS = MAX_CANDIDATES
MAX_SLOTS = MAX_SLATE
FeatureList = list[Any]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)


class RankableAction(_Body):
    """An action with the features it is ranked by."""

    id: str = Field(pattern=ID_PATTERN)
    features: FeatureList | None = Field(None, max_length=1000)


class RankRequest(_Body):
    """``POST /rank``."""

    contextFeatures: FeatureList | None = Field(None, max_length=1000)  # noqa: N815
    actions: list[RankableAction] = Field(min_length=1, max_length=MAX_ACTIONS)
    excludedActions: list[str] | None = Field(None, max_length=MAX_ACTIONS)  # noqa: N815
    eventId: str | None = Field(None, pattern=EVENT_ID_PATTERN)  # noqa: N815
    deferActivation: bool | None = False  # noqa: N815


class SlotRequest(_Body):
    """One slot of a multi-slot rank."""

    id: str = Field(pattern=ID_PATTERN)
    features: FeatureList | None = Field(None, max_length=1000)
    excludedActions: list[str] | None = Field(None, max_length=MAX_ACTIONS)  # noqa: N815
    baselineAction: str = Field(pattern=ID_PATTERN)  # noqa: N815


class MultiSlotRankRequest(_Body):
    """``POST /multislot/rank``."""

    contextFeatures: FeatureList | None = Field(None, max_length=1000)  # noqa: N815
    actions: list[RankableAction] = Field(min_length=1, max_length=MAX_ACTIONS)
    slots: list[SlotRequest] = Field(min_length=1, max_length=MAX_SLOTS)
    eventId: str | None = Field(None, pattern=EVENT_ID_PATTERN)  # noqa: N815
    deferActivation: bool | None = False  # noqa: N815


class RewardRequest(_Body):
    """``POST /events/{eventId}/reward``."""

    value: float = Field(ge=-1.0, le=1.0)


class SlotReward(_Body):
    """One slot's reward of a multi-slot event."""

    slotId: str = Field(min_length=1, max_length=256)  # noqa: N815
    value: float = Field(ge=-1.0, le=1.0)


class MultiSlotRewardRequest(_Body):
    """``POST /multislot/events/{eventId}/reward``."""

    reward: list[SlotReward] = Field(min_length=1, max_length=MAX_SLOTS)


class PolicyContract(_Body):
    """``PUT /configurations/policy`` and the policies of an evaluation."""

    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=1024)


class ServiceConfiguration(_Body):
    """``PUT /configurations/service`` (v1.0 requires the first six; 2022 also
    ``modelRetrainDays``, which defaults to 0 here)."""

    rewardWaitTime: str = Field(max_length=64)  # noqa: N815
    defaultReward: float = Field(ge=-1.0, le=1.0)  # noqa: N815
    rewardAggregation: str = Field(max_length=256)  # noqa: N815
    explorationPercentage: float = Field(ge=0.0, le=1.0)  # noqa: N815
    modelExportFrequency: str = Field(max_length=64)  # noqa: N815
    logRetentionDays: int = Field(ge=-1, le=2_147_483_647)  # noqa: N815
    modelRetrainDays: int = Field(0, ge=0, le=2_147_483_647)  # noqa: N815
    logMirrorEnabled: bool | None = None  # noqa: N815
    logMirrorSasUri: str | None = Field(None, max_length=2048)  # noqa: N815
    lastConfigurationEditDate: str | None = Field(None, max_length=64)  # noqa: N815
    learningMode: str | None = Field(None, max_length=64)  # noqa: N815
    isAutoOptimizationEnabled: bool | None = None  # noqa: N815
    autoOptimizationFrequency: str | None = Field(None, max_length=64)  # noqa: N815
    autoOptimizationStartDate: str | None = Field(None, max_length=64)  # noqa: N815


class EvaluationContract(_Body):
    """``POST /evaluations`` (v1.0) and ``PUT /evaluations/{id}`` (2022-09-01-preview)."""

    name: str = Field(min_length=1, max_length=256)
    startTime: str = Field(max_length=64)  # noqa: N815
    endTime: str = Field(max_length=64)  # noqa: N815
    policies: list[PolicyContract] = Field(default_factory=list, max_length=10)
    enableOfflineExperimentation: bool | None = None  # noqa: N815
    enablePolicyOptimization: bool | None = None  # noqa: N815
    # Serendip's own: how the first slot is estimated; Personalizer's clients never send it
    estimator: Literal["snips", "dr"] = "snips"


class PolicyReference(_Body):
    """``POST /configurations/applyFromEvaluation``."""

    evaluationId: str = Field(min_length=1, max_length=256)  # noqa: N815
    policyName: str = Field(min_length=1, max_length=256)  # noqa: N815
