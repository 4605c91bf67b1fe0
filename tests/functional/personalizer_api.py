"""Calls the Personalizer API's handler with API Gateway proxy events, as AWS would."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from local.lambda_events import FakeLambdaContext, proxy_event

RESOURCE = "/personalizer/{proxy+}"
V1 = "/personalizer/v1.0"
PREVIEW = "/personalizer"
API_VERSION = "api-version=2022-09-01-preview"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class PersonalizerApi:
    """A Personalizer client at the handler's door: ``call`` answers (status, body, headers),
    the body parsed as JSON, or bytes for ``application/octet-stream``."""

    def __init__(self, handler: Handler, api_key: str) -> None:
        self.handler = handler
        self.api_key = api_key

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: str = "",
        api_key: str | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any, dict[str, str]]:
        """``method path`` (``/personalizer/...``); 2022 paths get ``api-version`` added."""
        if path.startswith(PREVIEW + "/") and not path.startswith("/personalizer/v1"):
            query = "&".join(part for part in (API_VERSION, query) if part)
        raw = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
        headers = {
            "content-type": content_type,
            "Ocp-Apim-Subscription-Key": api_key if api_key is not None else self.api_key,
        }
        event = proxy_event(method, path, resource=RESOURCE, body=raw, headers=headers, query=query)
        response = self.handler(event, FakeLambdaContext())
        sent = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items() if v}
        sent.update(response.get("headers") or {})
        text = response.get("body") or ""
        if response.get("isBase64Encoded"):
            return response["statusCode"], base64.b64decode(text), sent
        return response["statusCode"], json.loads(text) if text else None, sent
