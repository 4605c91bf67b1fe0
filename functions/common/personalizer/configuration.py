"""``/configurations/service`` and ``/configurations/policy``: Personalizer's settings as fields
of the Serendip policy spec, and its learning arguments as the spec's VW arguments.

Service configuration -> spec: ``rewardWaitTime`` is ``rewards.wait_seconds`` (5 s to 7 days;
Personalizer allowed at most 2 days), ``defaultReward`` ``rewards.default``,
``rewardAggregation`` ``rewards.aggregation`` (``earliest``, ``sum`` or ``max``) and
``explorationPercentage`` ``exploration.budget`` for every user (segment budgets are cleared).
``modelExportFrequency``, ``logRetentionDays`` and ``modelRetrainDays`` are checked by
Personalizer's rules, kept and answered back: Serendip serves every model version as soon as
it is learned and keeps decision logs for a deployment-wide 30 days. What Serendip does not do
(logging-only mode, auto-optimization, log mirroring) is refused with 501. ``learningMode``
``Apprentice`` is the spec's ``mode: apprentice``: the baseline action (the first action not
excluded, or each slot's ``baselineAction``) is served, exploring within the budget, and learned.

Policy ``arguments`` -> spec: the flags Serendip sets itself (``--cb_explore_adf``,
``--dsjson``...) are dropped, Personalizer's ``-q ::`` (every pair of namespaces) becomes
``-q CI`` (context x action: Serendip puts context features in ``C...`` namespaces and action
features in ``I...``), the exploration flags choose the spec's exploration
(``--epsilon`` -> epsilon-greedy with that budget, ``--squarecb``, ``--softmax``; any other
exploration is VW's own, ``vw_pmf``), and the rest must pass Serendip's allowlist of VW
arguments. A change of learning arguments starts a fresh model version, as in Personalizer.
"""

from __future__ import annotations

import math
import shlex
from datetime import UTC, datetime
from typing import Any

from bandit.errors import FieldError, SpecError
from bandit.serve.vw_args import EXPLORATION_FLAGS
from bandit.spec import ExplorationAlgorithm, PolicySpec, load_spec, parse_spec
from functions.common import policy_store
from functions.common.auth import Principal
from functions.common.decision_store import RETENTION_SECONDS
from functions.common.personalizer import errors as codes
from functions.common.personalizer.contract import PolicyContract, ServiceConfiguration
from functions.common.personalizer.durations import format_duration, parse_duration
from functions.common.personalizer.errors import invalid, not_supported
from functions.common.personalizer.resource import DEFAULTS_FILE, stored
from functions.common.personalizer.serving import REWARD_TYPE
from functions.common.personalizer.store import read_settings, write_settings
from functions.common.settings import settings

MIN_REWARD_WAIT_SECONDS = 5
MAX_REWARD_WAIT_SECONDS = 7 * 86_400
AGGREGATIONS = ("earliest", "sum", "max")
# Flags Serendip always sets (or that only select Personalizer's own log format): dropped.
IMPLIED_FLAGS = frozenset({"--cb_explore_adf", "--cb_adf", "--dsjson", "--json", "--quiet"})
KEPT = ("modelExportFrequency", "logRetentionDays", "modelRetrainDays", "policyName")
DEFAULT_EXPORT_FREQUENCY = "PT1M"


def iso_time(seconds: float) -> str:
    """An instant as Personalizer wrote them (``2019-01-19T00:00:00Z``)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------- service configuration


def get_service(principal: Principal) -> dict[str, Any]:
    """``GET /configurations/service``."""
    principal.require("admin")
    current = stored(principal)
    kept, edited = read_settings(principal.tenant, current.spec.name)
    return _service_view(current.spec, kept, max(edited, current.updated_at))


def _service_view(spec: PolicySpec, kept: dict[str, Any], edited: float) -> dict[str, Any]:
    retention_days = math.ceil(RETENTION_SECONDS / 86_400)
    return {
        "rewardWaitTime": format_duration(spec.rewards.wait_seconds),
        "defaultReward": spec.rewards.default,
        "rewardAggregation": spec.rewards.aggregation,
        "explorationPercentage": spec.budget_for(spec.cold_start.segments[0].name),
        "modelExportFrequency": kept.get("modelExportFrequency", DEFAULT_EXPORT_FREQUENCY),
        "logRetentionDays": kept.get("logRetentionDays", retention_days),
        "modelRetrainDays": kept.get("modelRetrainDays", 0),
        "logMirrorEnabled": False,
        "lastConfigurationEditDate": iso_time(edited),
        "learningMode": "Apprentice" if spec.mode == "apprentice" else "Online",
        "isAutoOptimizationEnabled": False,
    }


def put_service(principal: Principal, body: ServiceConfiguration) -> dict[str, Any]:
    """``PUT /configurations/service``: checked whole before anything is stored."""
    principal.require("admin")
    _refuse_unsupported(body)
    wait = _reward_wait(body.rewardWaitTime)
    parse_duration(body.modelExportFrequency, "modelExportFrequency")
    aggregation = body.rewardAggregation.strip().lower()
    if aggregation not in AGGREGATIONS:
        raise invalid(
            codes.INVALID_SERVICE_CONFIGURATION,
            "rewardAggregation",
            f"'{body.rewardAggregation}' is not one of {', '.join(AGGREGATIONS)}",
        )
    minimum_days = math.ceil((wait + 86_400) / 86_400)
    if body.logRetentionDays != -1 and body.logRetentionDays < minimum_days:
        raise invalid(
            codes.INVALID_LOG_RETENTION,
            "logRetentionDays",
            f"must be -1 (keep) or at least the reward wait plus a day ({minimum_days} days)",
        )
    if body.logRetentionDays != -1 and body.modelRetrainDays > body.logRetentionDays:
        raise invalid(
            codes.INVALID_MODEL_RETRAIN,
            "modelRetrainDays",
            f"must be between 0 and logRetentionDays ({body.logRetentionDays})",
        )
    current = stored(principal)
    spec = current.spec
    segments = tuple(s.model_copy(update={"budget": None}) for s in spec.cold_start.segments)
    updated = _revalidated(
        spec.model_copy(
            update={
                "rewards": spec.rewards.model_copy(
                    update={
                        "wait_seconds": round(wait),
                        "default": body.defaultReward,
                        "aggregation": aggregation,
                        # Personalizer waited out rewardWaitTime to sum (or take the max of)
                        # every reward; the earliest one may close the event at once.
                        "close_early": aggregation == "earliest",
                        "types": {**spec.rewards.types, REWARD_TYPE: 1.0},
                    }
                ),
                "exploration": spec.exploration.model_copy(
                    update={"budget": body.explorationPercentage}
                ),
                "cold_start": spec.cold_start.model_copy(update={"segments": segments}),
                "mode": _learning_mode(body),
            }
        ),
        codes.INVALID_SERVICE_CONFIGURATION,
    )
    result = policy_store.put_spec(principal.tenant, updated)
    kept, _ = read_settings(principal.tenant, spec.name)
    kept.update(
        modelExportFrequency=body.modelExportFrequency,
        logRetentionDays=body.logRetentionDays,
        modelRetrainDays=body.modelRetrainDays,
    )
    edited = write_settings(principal.tenant, spec.name, kept)
    return _service_view(result.stored.spec, kept, edited)


def _learning_mode(body: ServiceConfiguration) -> str:
    """The spec's ``mode`` for Personalizer's ``learningMode`` (Online or Apprentice)."""
    mode = (body.learningMode or "Online").strip()
    if mode.lower() in {"online", "apprentice"}:
        return "live" if mode.lower() == "online" else "apprentice"
    if mode.lower() != "loggingonly":
        raise invalid(
            codes.INVALID_SERVICE_CONFIGURATION,
            "learningMode",
            f"'{mode}' is not one of Online, Apprentice, LoggingOnly",
        )
    raise not_supported(
        f"learningMode {mode}", "Apprentice serves the baseline and learns; use it instead"
    )


def _refuse_unsupported(body: ServiceConfiguration) -> None:
    _learning_mode(body)
    if body.isAutoOptimizationEnabled:
        raise not_supported(
            "isAutoOptimizationEnabled",
            "evaluate candidate arguments with /evaluations and apply the best with "
            "PUT /configurations/policy",
        )
    if body.logMirrorEnabled:
        raise not_supported(
            "logMirrorEnabled", "the decision log is exported with `serendip export`"
        )


def _reward_wait(text: str) -> float:
    try:
        wait = parse_duration(text, "rewardWaitTime")
    except FieldError as exc:
        raise invalid(codes.INVALID_REWARD_WAIT, "rewardWaitTime", exc.message) from exc
    if not MIN_REWARD_WAIT_SECONDS <= wait <= MAX_REWARD_WAIT_SECONDS:
        raise invalid(
            codes.INVALID_REWARD_WAIT,
            "rewardWaitTime",
            f"must be between {MIN_REWARD_WAIT_SECONDS} seconds and 7 days, not {text}",
        )
    return wait


def _revalidated(spec: PolicySpec, code: str) -> PolicySpec:
    """``spec`` validated again (``model_copy`` does not validate), as Personalizer's error."""
    try:
        return parse_spec(spec.model_dump(mode="json"))
    except SpecError as exc:
        raise invalid(code, exc.field, exc.message) from exc


# ------------------------------------------------------------------------------------ policy


def arguments_of(spec: PolicySpec) -> str:
    """The spec's learning settings as a Personalizer ``arguments`` command line."""
    exploration = spec.exploration
    flags = ["--cb_explore_adf"]
    if exploration.algorithm is ExplorationAlgorithm.EPSILON_GREEDY:
        flags += ["--epsilon", f"{exploration.budget:g}"]
    elif exploration.algorithm is ExplorationAlgorithm.SQUARECB:
        flags += ["--squarecb", "--gamma_scale", f"{exploration.squarecb_gamma:g}"]
    elif exploration.algorithm is ExplorationAlgorithm.SOFTMAX:
        flags += ["--softmax", "--lambda", f"{1.0 / exploration.softmax_temperature:g}"]
    else:
        flags += list(spec.vw.explore_args)
    return shlex.join([*flags, *spec.vw.args])


def get_policy(principal: Principal) -> dict[str, Any]:
    """``GET /configurations/policy``."""
    principal.require("admin")
    current = stored(principal)
    kept, _ = read_settings(principal.tenant, current.spec.name)
    return {
        "name": kept.get("policyName", current.spec.name),
        "arguments": arguments_of(current.spec),
    }


def spec_with_arguments(spec: PolicySpec, arguments: str, code: str) -> PolicySpec:
    """``spec`` learning and exploring as ``arguments`` say; Personalizer's error if they
    cannot (the message names the flag)."""
    try:
        tokens = shlex.split(arguments)
    except ValueError as exc:
        raise invalid(code, "arguments", f"cannot be split into flags: {exc}") from exc
    learning: list[str] = []
    exploring: list[tuple[str, str | None]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        takes_value = index + 1 < len(tokens) and not _is_flag(tokens[index + 1])
        value = tokens[index + 1] if takes_value else None
        step = 2 if takes_value else 1
        if token in IMPLIED_FLAGS:
            index += 1
            continue
        if token in {"-q", "--quadratic", "--interactions"} and value == "::":
            learning += ["-q", "CI"]
        elif token in EXPLORATION_FLAGS:
            exploring.append((token, value))
        else:
            learning += [token] if value is None else [token, value]
        index += step
    exploration = _exploration(spec, exploring, code)
    candidate = spec.model_dump(mode="json")
    candidate["vw"] = {
        "args": learning,
        "explore_args": (
            [t for flag, value in exploring for t in (flag, value) if t is not None]
            if exploration["algorithm"] == "vw_pmf"
            else []
        ),
    }
    candidate["exploration"] = exploration
    try:
        return parse_spec(candidate)
    except SpecError as exc:
        raise invalid(code, "arguments", exc.message) from exc


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not _is_number(token)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _exploration(
    spec: PolicySpec, flags: list[tuple[str, str | None]], code: str
) -> dict[str, Any]:
    """The spec's exploration settings for Personalizer's exploration flags."""
    exploration = spec.exploration.model_dump(mode="json")
    values = dict(flags)
    names = set(values)
    try:
        if names <= {"--epsilon"}:
            exploration["algorithm"] = "epsilon_greedy"
            if values.get("--epsilon") is not None:
                exploration["budget"] = float(values["--epsilon"] or "")
        elif "--squarecb" in names and names <= {"--squarecb", "--gamma_scale"}:
            exploration["algorithm"] = "squarecb"
            if values.get("--gamma_scale") is not None:
                exploration["squarecb_gamma"] = float(values["--gamma_scale"] or "")
        elif "--softmax" in names and names <= {"--softmax", "--lambda"}:
            exploration["algorithm"] = "softmax"
            if values.get("--lambda") is not None:
                exploration["softmax_temperature"] = 1.0 / float(values["--lambda"] or "")
        else:
            exploration["algorithm"] = "vw_pmf"
    except (ValueError, ZeroDivisionError) as exc:
        shown = " ".join(t for flag, value in flags for t in (flag, value) if t is not None)
        raise invalid(code, "arguments", f"exploration flags {shown}: {exc}") from exc
    return exploration


def put_policy(principal: Principal, body: PolicyContract) -> dict[str, Any]:
    """``PUT /configurations/policy``: new learning settings (a fresh model if they change)."""
    principal.require("admin")
    current = stored(principal)
    updated = spec_with_arguments(current.spec, body.arguments, codes.INVALID_POLICY_CONFIGURATION)
    result = policy_store.put_spec(principal.tenant, updated)
    kept, _ = read_settings(principal.tenant, current.spec.name)
    kept["policyName"] = body.name
    write_settings(principal.tenant, current.spec.name, kept)
    return {"name": body.name, "arguments": arguments_of(result.stored.spec)}


def reset_policy(principal: Principal) -> dict[str, Any]:
    """``DELETE /configurations/policy``: Personalizer's default learning settings again."""
    principal.require("admin")
    current = stored(principal)
    defaults = load_spec(settings().policies_dir / DEFAULTS_FILE)
    spec = current.spec.model_copy(
        update={
            "vw": defaults.vw,
            "exploration": current.spec.exploration.model_copy(
                update={
                    "algorithm": defaults.exploration.algorithm,
                    "budget": defaults.exploration.budget,
                }
            ),
        }
    )
    result = policy_store.put_spec(principal.tenant, spec)
    kept, _ = read_settings(principal.tenant, current.spec.name)
    kept.pop("policyName", None)
    write_settings(principal.tenant, current.spec.name, kept)
    return {"name": current.spec.name, "arguments": arguments_of(result.stored.spec)}
