"""``Serendip``: one method per route of the service's ``/v1`` API."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast

from serendip_client._bodies import (
    PolicySource,
    chunks,
    encode,
    listed,
    policy_body,
    query_string,
    seg,
    without_none,
)
from serendip_client._http import (
    IDEMPOTENT_METHODS,
    VERSION,
    HttpRequest,
    Retrier,
    Transport,
    UrllibTransport,
)
from serendip_client.errors import error_for
from serendip_client.models import (
    Accepted,
    Activation,
    Candidate,
    Challenger,
    EventState,
    Filters,
    Health,
    Item,
    ItemsPage,
    MetricsPage,
    ModelsPage,
    ModelVersion,
    Policy,
    PolicyDeleted,
    PolicyPut,
    Progress,
    RankResult,
    RecommendResult,
    Reward,
    Rollback,
    Upserted,
)
from serendip_client.signing import SIGNATURE_HEADER, sign

MAX_REWARDS_PER_POST = 100
MAX_ITEMS_PER_UPSERT = 500
# Posts that may be repeated after a connection error although they are POSTs (see _http).
_REPEATABLE_POSTS = ("/v1/rewards", "/activate")

Number = int | float


class Serendip:
    """A client of one Serendip endpoint with one API key.

    ``webhook_secret`` signs reward posts: one secret, or several during a rotation (every one
    signs, the service accepts a match with any). ``timeout`` is per attempt in seconds;
    ``retries`` (more attempts after the first), ``backoff`` (seconds) and ``max_delay`` (the
    cap of one wait, ``Retry-After`` included) follow the rules of ``serendip_client._http``.
    ``transport``, ``sleep``, ``clock`` and ``jitter`` are injectable (tests, proxies).

    >>> client = Serendip("http://127.0.0.1:3000", "sk_...", "whsec_...")
    >>> client.url
    'http://127.0.0.1:3000'
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        webhook_secret: str | Sequence[str] | None = None,
        *,
        timeout: float = 10,
        retries: int = 3,
        backoff: float = 0.5,
        max_delay: float = 30.0,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        self.url = url.rstrip("/")
        self.api_key = api_key
        secrets = [webhook_secret] if isinstance(webhook_secret, str) else webhook_secret
        self.webhook_secrets: tuple[str, ...] = tuple(secrets or ())
        self.timeout = float(timeout)
        self.clock = clock
        self._retrier = Retrier(
            transport or UrllibTransport(),
            retries=retries,
            backoff=backoff,
            max_delay=max_delay,
            sleep=sleep,
            clock=clock,
            jitter=jitter,
        )

    # ------------------------------------------------------------ serving

    def rank(
        self,
        policy: str,
        candidates: Sequence[Candidate | str],
        *,
        context: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        slate_size: int | None = None,
        exclude: Sequence[str] | None = None,
        defer_activation: bool | None = None,
        baseline: Sequence[str] | None = None,
    ) -> RankResult:
        """``POST /v1/policies/{policy}/rank``: a slate from ``candidates`` (dicts or catalog
        ids). Never repeated after a connection error (a repeat would log a second decision)."""
        body = without_none(
            context=dict(context or {}),
            candidates=list(candidates),
            user_id=user_id,
            slate_size=slate_size,
            exclude=listed(exclude),
            defer_activation=defer_activation,
            baseline=listed(baseline),
        )
        return cast(RankResult, self.call("POST", f"/v1/policies/{seg(policy)}/rank", body))

    def recommend(
        self,
        policy: str,
        *,
        context: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        slate_size: int | None = None,
        size: int | None = None,
        filters: Filters | None = None,
        exclude: Sequence[str] | None = None,
        defer_activation: bool | None = None,
    ) -> RecommendResult:
        """``POST /v1/policies/{policy}/recommend``: a slate from the tenant's catalog index.
        ``UnavailableError`` (``error == "index_not_built"``) before the first index build."""
        body = without_none(
            context=dict(context or {}),
            user_id=user_id,
            slate_size=slate_size,
            size=size,
            filters=None if filters is None else dict(filters),
            exclude=listed(exclude),
            defer_activation=defer_activation,
        )
        path = f"/v1/policies/{seg(policy)}/recommend"
        return cast(RecommendResult, self.call("POST", path, body))

    # ------------------------------------------------------------ feedback

    def post_reward(
        self,
        event_id: str,
        item_id: str,
        type: str = "click",
        *,
        value: float | None = None,
        final: bool | None = None,
        timestamp: float | None = None,
    ) -> Accepted:
        """``POST /v1/rewards`` with one reward, signed; ``{"accepted": 1}``."""
        reward = without_none(
            event_id=event_id, item_id=item_id, type=type, value=value, final=final
        )
        if timestamp is not None:
            reward["timestamp"] = timestamp
        return self.post_rewards([cast(Reward, reward)])

    def post_rewards(self, rewards: Iterable[Reward]) -> Accepted:
        """``POST /v1/rewards``, signed, in posts of at most 100; the accepted count of all
        (no rewards: nothing is sent).

        A post that fails after some were accepted may be sent again whole: the service
        applies each reward once (give ``timestamp`` to tell two real clicks apart).
        """
        accepted = 0
        for chunk in chunks(list(rewards), MAX_REWARDS_PER_POST):
            raw = encode({"rewards": chunk})
            answer = self.call("POST", "/v1/rewards", raw=raw, signed=True)
            accepted += int(answer["accepted"])
        return {"accepted": accepted}

    def activate(
        self, event_id: str, *, seen: Sequence[int] | None = None, seen_through: int | None = None
    ) -> Activation:
        """``POST /v1/events/{event_id}/activate``: the event was shown; ``seen`` (1-based
        positions) or ``seen_through`` (the first k slots) say which slots the user saw."""
        body = without_none(seen=listed(seen), seen_through=seen_through)
        return cast(Activation, self.call("POST", f"/v1/events/{seg(event_id)}/activate", body))

    def event(self, event_id: str) -> EventState:
        """``GET /v1/events/{event_id}``: open, learned, expired or failed."""
        return cast(EventState, self.call("GET", f"/v1/events/{seg(event_id)}"))

    # ------------------------------------------------------------ policies and models

    def list_policies(self) -> list[Policy]:
        """``GET /v1/policies``: the tenant's policies."""
        return cast(list[Policy], self.call("GET", "/v1/policies")["policies"])

    def get_policy(self, policy: str) -> Policy:
        """``GET /v1/policies/{policy}``."""
        return cast(Policy, self.call("GET", f"/v1/policies/{seg(policy)}"))

    def put_policy(
        self,
        policy: str,
        spec: PolicySource,
        *,
        model: Literal["fresh", "retrain"] | None = None,
    ) -> PolicyPut:
        """``PUT /v1/policies/{policy}`` (scope ``admin``): create or replace a policy.

        ``spec`` is a dict, a path to a ``.yaml``/``.yml``/``.json`` file, or the spec's text
        (YAML is sent as ``application/yaml``, JSON as ``application/json``). A change of the
        VW arguments retrains a model from the decision log in the background by default (the
        answer's ``retrain`` says how far it got); ``model="fresh"`` starts a fresh one at once.
        """
        raw, content_type = policy_body(spec)
        path = f"/v1/policies/{seg(policy)}"
        answer = self.call("PUT", path, raw=raw, content_type=content_type, query={"model": model})
        return cast(PolicyPut, answer)

    def delete_policy(self, policy: str) -> PolicyDeleted:
        """``DELETE /v1/policies/{policy}`` (scope ``admin``): the policy, its model versions
        and their objects; its logged events stay."""
        return cast(PolicyDeleted, self.call("DELETE", f"/v1/policies/{seg(policy)}"))

    def models_page(
        self, policy: str, *, limit: int | None = None, next_token: str | None = None
    ) -> ModelsPage:
        """One page of ``GET /v1/policies/{policy}/models``, newest first."""
        query = {"limit": limit, "next_token": next_token}
        path = f"/v1/policies/{seg(policy)}/models"
        return cast(ModelsPage, self.call("GET", path, query=query))

    def list_models(self, policy: str, *, page_size: int | None = None) -> Iterator[ModelVersion]:
        """Every kept model version, newest first, reading page after page."""
        token: str | None = None
        while True:
            page = self.models_page(policy, limit=page_size, next_token=token)
            yield from page["versions"]
            token = page.get("next_token")
            if not token:
                return

    def rollback(self, policy: str, version: int) -> Rollback:
        """``POST /v1/policies/{policy}/rollback`` (scope ``admin``): a copy of ``version``
        becomes the head. Never repeated after a connection error (it would copy again)."""
        path = f"/v1/policies/{seg(policy)}/rollback"
        return cast(Rollback, self.call("POST", path, {"version": version}))

    def progress(
        self,
        policy: str,
        *,
        since: Number | None = None,
        until: Number | None = None,
        window: Number | None = None,
    ) -> Progress:
        """``GET /v1/policies/{policy}/progress``: learning progress over ``[since, until)``
        (default the last 24 h), in windows of ``window`` seconds, and the verdict."""
        query = {"since": since, "until": until, "window": window}
        path = f"/v1/policies/{seg(policy)}/progress"
        return cast(Progress, self.call("GET", path, query=query))

    # ------------------------------------------------------------ challengers

    def put_challenger(
        self,
        policy: str,
        spec: Mapping[str, Any],
        *,
        margin: Number | None = None,
        min_events: int | None = None,
        auto_promote: bool | None = None,
    ) -> Challenger:
        """``PUT /v1/policies/{policy}/challenger``: start (or restart) a challenger ``spec``
        with its promotion rule (the service's defaults for what is not given)."""
        body = {
            "spec": dict(spec),
            **without_none(margin=margin, min_events=min_events, auto_promote=auto_promote),
        }
        path = f"/v1/policies/{seg(policy)}/challenger"
        return cast(Challenger, self.call("PUT", path, body))

    def challenger(self, policy: str) -> Challenger:
        """``GET /v1/policies/{policy}/challenger``: both estimates and the rule's answer."""
        return cast(Challenger, self.call("GET", f"/v1/policies/{seg(policy)}/challenger"))

    def delete_challenger(self, policy: str) -> dict[str, Any]:
        """``DELETE /v1/policies/{policy}/challenger``: stop and forget it."""
        path = f"/v1/policies/{seg(policy)}/challenger"
        return cast(dict[str, Any], self.call("DELETE", path))

    def promote_challenger(self, policy: str) -> Challenger:
        """``POST /v1/policies/{policy}/challenger/promote``: promote it now (never retried
        after a connection error: read ``challenger`` to see whether it was)."""
        path = f"/v1/policies/{seg(policy)}/challenger/promote"
        return cast(Challenger, self.call("POST", path))

    def rollback_challenger(self, policy: str) -> Challenger:
        """``POST /v1/policies/{policy}/challenger/rollback``: undo its promotion."""
        path = f"/v1/policies/{seg(policy)}/challenger/rollback"
        return cast(Challenger, self.call("POST", path))

    # ------------------------------------------------------------ metrics

    def metrics(
        self,
        policy: str,
        *,
        since: Number | None = None,
        until: Number | None = None,
        segment: str | None = None,
        next_token: str | None = None,
    ) -> MetricsPage:
        """One page of ``GET /v1/policies/{policy}/metrics`` (at most 2,000 events)."""
        query = {"since": since, "until": until, "segment": segment, "next_token": next_token}
        path = f"/v1/policies/{seg(policy)}/metrics"
        return cast(MetricsPage, self.call("GET", path, query=query))

    def metrics_pages(
        self,
        policy: str,
        *,
        since: Number | None = None,
        until: Number | None = None,
        segment: str | None = None,
    ) -> Iterator[MetricsPage]:
        """Every page of the window, oldest events first; counts add up over the pages.

        The first page's window (``until`` defaults to now) is kept for the later pages.
        """
        page = self.metrics(policy, since=since, until=until, segment=segment)
        yield page
        window = page["window"]
        while token := page["records"]["next_token"]:
            page = self.metrics(
                policy,
                since=window["since"],
                until=window["until"],
                segment=segment,
                next_token=token,
            )
            yield page

    # ------------------------------------------------------------ catalog

    def put_items(self, items: Iterable[Item]) -> Upserted:
        """``PUT /v1/items`` (scope ``admin``) in upserts of at most 500; the count written
        (no items: nothing is sent)."""
        upserted = 0
        for chunk in chunks(list(items), MAX_ITEMS_PER_UPSERT):
            upserted += int(self.call("PUT", "/v1/items", {"items": chunk})["upserted"])
        return {"upserted": upserted}

    def items_page(self, *, limit: int | None = None, next_token: str | None = None) -> ItemsPage:
        """One page of ``GET /v1/items``."""
        query = {"limit": limit, "next_token": next_token}
        return cast(ItemsPage, self.call("GET", "/v1/items", query=query))

    def list_items(self, *, page_size: int | None = None) -> Iterator[Item]:
        """Every catalog item, reading page after page."""
        token: str | None = None
        while True:
            page = self.items_page(limit=page_size, next_token=token)
            yield from page["items"]
            token = page.get("next_token")
            if not token:
                return

    def get_item(self, item_id: str) -> Item:
        """``GET /v1/items/{item_id}``."""
        return cast(Item, self.call("GET", f"/v1/items/{seg(item_id)}"))

    # ------------------------------------------------------------ service

    def health(self) -> Health:
        """``GET /v1/health`` (no key needed)."""
        return cast(Health, self.call("GET", "/v1/health"))

    def openapi(self) -> dict[str, Any]:
        """``GET /v1/openapi.json``: the OpenAPI 3 document."""
        return cast(dict[str, Any], self.call("GET", "/v1/openapi.json"))

    # ------------------------------------------------------------ any route

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, Any] | None = None,
        signed: bool = False,
    ) -> Any:
        """One route: the decoded JSON answer (None when empty), or a ``SerendipError``.

        ``body`` is sent as JSON, ``raw`` as it is; ``signed`` adds the webhook signature.
        """
        data = raw if raw is not None else (None if body is None else encode(body))
        if signed and not self.webhook_secrets:
            raise ValueError("signing a reward post needs webhook_secret")
        url = self.url + path + query_string(query)
        headers = {
            "x-api-key": self.api_key,
            "accept": "application/json",
            "user-agent": f"serendip-client/{VERSION}",
        }
        if data is not None:
            headers["content-type"] = content_type

        def build() -> HttpRequest:
            sent = dict(headers)
            if signed:
                timestamp = int(self.clock())
                sent[SIGNATURE_HEADER] = sign(data or b"", self.webhook_secrets, timestamp)
            return HttpRequest(method, url, sent, data, self.timeout)

        repeatable = method in IDEMPOTENT_METHODS or path.endswith(_REPEATABLE_POSTS)
        answer, retry_after = self._retrier.send(build, repeatable=repeatable)
        if answer.status >= 400:
            raise error_for(answer.status, answer.headers, answer.body, retry_after)
        return json.loads(answer.body) if answer.body else None
