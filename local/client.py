"""The demo's and benchmarks' HTTP client: ``serendip_client``'s transport and signing, without
its retries and with every answer returned rather than raised (they count statuses)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from serendip_client import HttpRequest, UrllibTransport, sign


@dataclass(frozen=True)
class HttpResponse:
    """Status, decoded JSON body and headers (lower-case names) of one call."""

    status: int
    body: Any
    headers: dict[str, str]


class SerendipClient:
    """Calls one Serendip endpoint with one API key (and webhook secret, for rewards).

    One attempt per call: a connection error raises ``OSError``, an HTTP error status comes
    back as a response.
    """

    def __init__(
        self, url: str, api_key: str, webhook_secret: str = "", timeout: float = 30.0
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.timeout = timeout
        self._transport = UrllibTransport()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> HttpResponse:
        """One call; never raises for HTTP error statuses (they come back as responses)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"content-type": "application/json", "x-api-key": self.api_key}
        all_headers.update(headers or {})
        answer = self._transport.send(
            HttpRequest(method, self.url + path, all_headers, data, self.timeout)
        )
        return HttpResponse(answer.status, _json(answer.body), dict(answer.headers))

    def rank(self, policy: str, body: dict[str, Any]) -> HttpResponse:
        """``POST /v1/policies/{policy}/rank``."""
        return self.request("POST", f"/v1/policies/{policy}/rank", body)

    def post_rewards(self, rewards: list[dict[str, Any]], *, signed: bool = True) -> HttpResponse:
        """``POST /v1/rewards``, signed with the webhook secret unless ``signed`` is false."""
        raw = json.dumps({"rewards": rewards}).encode()
        headers = {}
        if signed:
            headers["x-serendip-signature"] = sign(raw, self.webhook_secret, int(time.time()))
        return self.request("POST", "/v1/rewards", raw=raw, headers=headers)


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"raw": data.decode(errors="replace")}
