"""The Personalizer-compatible API (``/personalizer/...``): Azure Personalizer's REST contract,
so its own SDKs can switch to Serendip by changing the endpoint and the key.

Three bases, as Personalizer served them: ``/personalizer/v1.0`` (the stable API),
``/personalizer/v1.1-preview.3`` and ``/personalizer`` with ``?api-version=2022-09-01-preview``.
The key goes in ``Ocp-Apim-Subscription-Key`` (``x-api-key`` works too). Every answer and every
error is Personalizer's shape; the routes map onto Serendip's services
(``functions.common.personalizer``, docs/personalizer.md).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from functions.common.api_models import ID_PATTERN
from functions.common.auth import Principal, authenticate
from functions.common.http import check_body_size, header, parse_json, raw_body
from functions.common.observability import logger, metrics, tracer
from functions.common.personalizer import configuration, evaluations, models, serving
from functions.common.personalizer import errors as codes
from functions.common.personalizer.contract import (
    EvaluationContract,
    MultiSlotRankRequest,
    MultiSlotRewardRequest,
    PolicyContract,
    PolicyReference,
    RankRequest,
    RewardRequest,
    ServiceConfiguration,
)
from functions.common.personalizer.errors import PersonalizerError, not_supported, translate
from functions.common.rank_service import RankService

V1 = "/personalizer/v1.0"
V11 = "/personalizer/v1.1-preview.3"
PREVIEW = "/personalizer"
API_VERSIONS = frozenset({"2022-09-01-preview"})
ALL = (V1, V11, PREVIEW)
LATER = (V11, PREVIEW)
KEY_HEADERS = ("ocp-apim-subscription-key", "x-api-key")

M = TypeVar("M", bound=BaseModel)
app = APIGatewayRestResolver()
_service: RankService | None = None


def service() -> RankService:
    """The process-wide rank service (built on first use)."""
    global _service  # noqa: PLW0603
    if _service is None:
        _service = RankService()
    return _service


def principal() -> Principal:
    """The authenticated caller of the current request."""
    found = app.context.get("principal")
    if not isinstance(found, Principal):
        raise RuntimeError("route reached without authentication")
    return found


def _body(model: type[M], code: str) -> M:
    """The request body as ``model``; Personalizer's 400 with ``code`` naming the bad field."""
    data = parse_json(raw_body(app.current_event.raw_event) or b"null")
    if not isinstance(data, dict):
        raise PersonalizerError(400, code, "the body must be a JSON object", target="body")
    return model.model_validate(data)


def _json(status: int, body: Any) -> Response[Any]:
    return Response(status, content_types.APPLICATION_JSON, body)


def _empty(status: int = 204) -> Response[Any]:
    return Response(status, content_types.APPLICATION_JSON, "")


def _query(name: str) -> str | None:
    return app.current_event.get_query_string_value(name)


Handler = Callable[..., Response[Any]]


def route(
    method: str, suffix: str, bases: tuple[str, ...], code: str
) -> Callable[[Handler], Handler]:
    """Serve ``handler`` at ``method base+suffix`` for each base; its errors as ``code``."""

    def register(handler: Handler) -> Handler:
        def guarded(*args: Any, **kwargs: Any) -> Response[Any]:
            try:
                return handler(*args, **kwargs)
            except Exception as error:  # every failure answers in Personalizer's shape
                return _error_response(translate(error, code))

        for base in bases:
            app.route(base + suffix, method=[method])(guarded)
        return handler

    return register


def _error_response(error: PersonalizerError) -> Response[Any]:
    if error.status >= 500:
        logger.warning("personalizer request failed", extra={"error": error.message})
    headers = {k: v for k, v in error.headers().items() if k != "Content-Type"}
    return Response(error.status, content_types.APPLICATION_JSON, error.body(), headers=headers)


def _base() -> str:
    path = app.current_event.path
    return next(b for b in (V1, V11) if path.startswith(b + "/")) if _versioned(path) else PREVIEW


def _versioned(path: str) -> bool:
    return path.startswith((V1 + "/", V11 + "/"))


# ------------------------------------------------------------------------------ serving


@route("POST", "/rank", ALL, codes.INVALID_RANK)
def rank() -> Response[Any]:
    """Rank the actions: which one to show (``rewardActionId``), each with its probability."""
    return _json(201, serving.rank(service(), principal(), _body(RankRequest, codes.INVALID_RANK)))


@route("POST", "/multislot/rank", LATER, codes.INVALID_RANK)
def multislot_rank() -> Response[Any]:
    """Rank the actions into slots: a distinct action per slot, with its probability."""
    body = _body(MultiSlotRankRequest, codes.INVALID_RANK)
    return _json(201, serving.multislot_rank(service(), principal(), body))


@route("POST", "/events/<eventId>/reward", ALL, codes.INVALID_REWARD)
def reward(eventId: str) -> Response[Any]:  # noqa: N803
    """The reward of the event's chosen action."""
    serving.reward(principal(), eventId, _body(RewardRequest, codes.INVALID_REWARD))
    return _empty()


@route("POST", "/multislot/events/<eventId>/reward", LATER, codes.INVALID_REWARD)
def multislot_reward(eventId: str) -> Response[Any]:  # noqa: N803
    """The rewards of the event's slots."""
    body = _body(MultiSlotRewardRequest, codes.INVALID_REWARD)
    serving.multislot_reward(principal(), eventId, body)
    return _empty()


@route("POST", "/events/<eventId>/activate", ALL, codes.INVALID_ACTIVATE)
def activate(eventId: str) -> Response[Any]:  # noqa: N803
    """A deferred event was shown: its rewards count from now."""
    serving.activate(principal(), eventId)
    return _empty()


@route("POST", "/multislot/events/<eventId>/activate", LATER, codes.INVALID_ACTIVATE)
def multislot_activate(eventId: str) -> Response[Any]:  # noqa: N803
    """A deferred multi-slot event was shown."""
    serving.activate(principal(), eventId)
    return _empty()


# ------------------------------------------------------------------------- configuration


@route("GET", "/configurations/service", ALL, codes.INVALID_SERVICE_CONFIGURATION)
def get_service_configuration() -> Response[Any]:
    """Reward wait, default reward, aggregation, exploration and the kept settings."""
    return _json(200, configuration.get_service(principal()))


@route("PUT", "/configurations/service", ALL, codes.INVALID_SERVICE_CONFIGURATION)
def put_service_configuration() -> Response[Any]:
    """Change them (checked whole first)."""
    body = _body(ServiceConfiguration, codes.INVALID_SERVICE_CONFIGURATION)
    return _json(200, configuration.put_service(principal(), body))


@route("GET", "/configurations/policy", ALL, codes.INVALID_POLICY_CONFIGURATION)
def get_policy() -> Response[Any]:
    """The learning settings as a VW command line."""
    return _json(200, configuration.get_policy(principal()))


@route("PUT", "/configurations/policy", ALL, codes.INVALID_POLICY_CONFIGURATION)
def put_policy() -> Response[Any]:
    """New learning settings (a fresh model version if the arguments change)."""
    body = _body(PolicyContract, codes.INVALID_POLICY_CONFIGURATION)
    return _json(200, configuration.put_policy(principal(), body))


@route("DELETE", "/configurations/policy", ALL, codes.INVALID_POLICY_CONFIGURATION)
def reset_policy() -> Response[Any]:
    """Personalizer's default learning settings again."""
    return _json(200, configuration.reset_policy(principal()))


@route("POST", "/configurations/applyFromEvaluation", LATER, codes.BAD_REQUEST)
def apply_from_evaluation() -> Response[Any]:
    """Make one evaluated setting the policy's learning settings."""
    body = _body(PolicyReference, codes.BAD_REQUEST)
    evaluation = evaluations.get(principal(), body.evaluationId)
    chosen = next((p for p in evaluation["policies"] if p["name"] == body.policyName), None)
    if chosen is None or chosen["source"] in {"Baseline", "Random"}:
        raise PersonalizerError(
            404,
            codes.LEARNING_SETTINGS_NOT_FOUND,
            f"the evaluation holds no learning settings named '{body.policyName}'",
            target="policyName",
        )
    contract = PolicyContract(name=body.policyName, arguments=chosen["arguments"])
    configuration.put_policy(principal(), contract)
    return _empty()


# ---------------------------------------------------------------------------- evaluations


@route("POST", "/evaluations", (V1, V11), codes.INVALID_EVALUATION)
def create_evaluation() -> Response[Any]:
    """Evaluate learning settings on the log (v1.0: the service names the evaluation)."""
    body = _body(EvaluationContract, codes.INVALID_EVALUATION)
    evaluation_id = re.sub(r"[^A-Za-z0-9-]", "-", body.name)[:200] + "-" + _short_id()
    evaluation = evaluations.create(principal(), evaluation_id, body)
    location = f"{_base()}/evaluations/{evaluation_id}"
    return Response(
        201,
        content_types.APPLICATION_JSON,
        evaluations.render_v1(evaluation),
        headers={"Location": location},
    )


def _short_id() -> str:
    return uuid.uuid4().hex[:12]


@route("PUT", "/evaluations/<evaluationId>", (PREVIEW,), codes.INVALID_EVALUATION)
def put_evaluation(evaluationId: str) -> Response[Any]:  # noqa: N803
    """Evaluate learning settings on the log, under the caller's id."""
    _check_id(evaluationId, "evaluationId", codes.INVALID_EVALUATION)
    evaluations.create(
        principal(), evaluationId, _body(EvaluationContract, codes.INVALID_EVALUATION)
    )
    return _empty(200)


@route("GET", "/evaluations/<evaluationId>", ALL, codes.INVALID_EVALUATION)
def get_evaluation(evaluationId: str) -> Response[Any]:  # noqa: N803
    """One evaluation with every setting's estimate."""
    evaluation = evaluations.get(principal(), evaluationId)
    if _base() != PREVIEW:
        return _json(200, evaluations.render_v1(evaluation))
    start, end, minutes, window = evaluations.parse_window(
        _query("startTime"), _query("endTime"), _query("intervalInMinutes"), _query("window")
    )
    rendered = evaluations.render_preview(
        evaluation, start=start, end=end, minutes=minutes, window=window
    )
    return _json(200, rendered)


@route("GET", "/evaluations", ALL, codes.INVALID_EVALUATION)
def list_evaluations() -> Response[Any]:
    """Every evaluation, newest first (2022: paged with ``top``, ``skip``, ``maxpagesize``)."""
    kept = evaluations.listing(principal())
    if _base() != PREVIEW:
        return _json(200, [evaluations.render_v1(e) for e in kept])
    skip = _count("skip", 0)
    top = _count("top", len(kept))
    size = min(_count("maxpagesize", 100), top)
    page = kept[skip : skip + size]
    answer: dict[str, Any] = {"value": [evaluations.details(e) for e in page]}
    left = min(top, len(kept) - skip) - len(page)
    if left > 0:
        answer["nextLink"] = (
            f"{_origin()}{PREVIEW}/evaluations?api-version={_query('api-version')}"
            f"&top={top - len(page)}&skip={skip + len(page)}&maxpagesize={size}"
        )
    return _json(200, answer)


def _origin() -> str:
    headers = app.current_event.headers or {}
    host = next((v for k, v in headers.items() if k.lower() == "host"), "")
    proto = next((v for k, v in headers.items() if k.lower() == "x-forwarded-proto"), "https")
    return f"{proto}://{host}" if host else ""


def _count(name: str, default: int) -> int:
    text = _query(name)
    if text is None:
        return default
    if not text.isdigit():
        raise codes.invalid(codes.BAD_REQUEST, name, "must be a whole number >= 0")
    return int(text)


@route("DELETE", "/evaluations/<evaluationId>", ALL, codes.INVALID_EVALUATION)
def delete_evaluation(evaluationId: str) -> Response[Any]:  # noqa: N803
    """Forget an evaluation."""
    evaluations.delete(principal(), evaluationId)
    return _empty()


# ------------------------------------------------------------------------- model and logs


@route("GET", "/model", ALL, codes.BAD_REQUEST)
def export_model() -> Response[Any]:
    """The head model version's blob (``signed`` is accepted: the blob carries a SHA-256)."""
    return Response(200, "application/octet-stream", models.export(principal()))


@route("PUT", "/model", LATER, codes.INVALID_MODEL_FORMAT)
def import_model() -> Response[Any]:
    """A blob from ``GET /model`` becomes the new head version."""
    models.import_model(principal(), raw_body(app.current_event.raw_event))
    return _empty()


@route("DELETE", "/model", ALL, codes.BAD_REQUEST)
def reset_model() -> Response[Any]:
    """A fresh model becomes the new head version."""
    models.reset(principal())
    return _empty()


@route("GET", "/model/properties", ALL, codes.BAD_REQUEST)
def model_properties() -> Response[Any]:
    """When the model line began and last changed."""
    return _json(200, models.properties(principal()))


@route("GET", "/logs/properties", ALL, codes.BAD_REQUEST)
def log_properties() -> Response[Any]:
    """The dates of the oldest and newest kept decisions."""
    return _json(200, models.log_properties(principal()))


@route("DELETE", "/logs", ALL, codes.BAD_REQUEST)
def delete_logs() -> Response[Any]:
    """Not offered: the decision log is what rewards join and what evaluations replay."""
    raise not_supported(
        "DELETE /logs",
        "the decision log is what rewards join to and evaluations replay; records expire "
        "after 30 days (docs/personalizer.md)",
    )


def _unsupported(what: str, why: str) -> Handler:
    def answer(**_: Any) -> Response[Any]:
        raise not_supported(what, why)

    return answer


for _method, _suffix in (
    ("GET", "/featureImportances"),
    ("GET", "/featureImportances/<featureImportanceId>"),
    ("PUT", "/featureImportances/<featureImportanceId>"),
    ("DELETE", "/featureImportances/<featureImportanceId>"),
):
    route(_method, _suffix, (PREVIEW,), codes.BAD_REQUEST)(
        _unsupported("feature importances", "not built yet (docs/personalizer.md)")
    )
for _suffix in ("/logs/interactions", "/logs/observations"):
    route("POST", _suffix, (PREVIEW,), codes.BAD_REQUEST)(
        _unsupported(_suffix, "it takes the binary log of Personalizer's own SDK agents")
    )


# ------------------------------------------------------------------------------- handler


def _check_id(value: str, name: str, code: str) -> None:
    if not re.fullmatch(ID_PATTERN, value):
        raise codes.invalid(code, name, "must be 1 to 256 characters, none a control character")


def _authenticate(event: dict[str, Any]) -> Principal:
    key = next((header(event, name) for name in KEY_HEADERS if header(event, name)), None)
    return authenticate(key)


def _check_api_version(event: dict[str, Any]) -> None:
    path = str(event.get("path") or "")
    if _versioned(path):
        return
    version = (event.get("queryStringParameters") or {}).get("api-version")
    if version not in API_VERSIONS:
        shown = "missing" if version is None else f"'{version}'"
        raise PersonalizerError(
            400,
            codes.BAD_REQUEST,
            f"api-version is {shown}: use ?api-version=2022-09-01-preview, or the "
            f"{V1} and {V11} paths",
            target="api-version",
        )


def _check_event_id(event: dict[str, Any]) -> None:
    path = str(event.get("path") or "")
    match = re.search(r"/events/([^/]*)/(?:reward|activate)$", path)
    if match and not re.fullmatch(ID_PATTERN, match.group(1)):
        raise codes.invalid(
            codes.BAD_REQUEST, "eventId", "must be 1 to 256 characters, none a control character"
        )


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Cap the body, authenticate, check the API version, then route."""
    try:
        check_body_size(event)
        caller = _authenticate(event)
        _check_api_version(event)
        _check_event_id(event)
    except Exception as error:
        return translate(error, codes.BAD_REQUEST).proxy_response()
    app.append_context(principal=caller)
    try:
        return app.resolve(event, context)
    except Exception as error:  # no route, or a failure outside every route's guard
        return translate(error, codes.BAD_REQUEST).proxy_response()


@app.not_found
def _no_route(_: Exception) -> Response[Any]:
    method = app.current_event.http_method
    return _error_response(
        PersonalizerError(
            404,
            codes.NOT_FOUND,
            f"no Personalizer route {method} {app.current_event.path} (docs/personalizer.md)",
        )
    )
