"""A local API Gateway: HTTP requests -> REST proxy events -> the template's handlers.

Routes come from ``template.yaml``: every ``Api`` event of every ``AWS::Serverless::Function``
gives a method and a path template (``/v1/policies/{policy}/rank``) served by that function's
``Handler``. A request becomes the proxy event API Gateway would send (``proxy_event``), the very
handler AWS runs is called with it, and its proxy response (status, headers, multi-value headers,
base64 bodies) is written back.

What API Gateway itself answers, this answers too, as JSON: no route -> 404, a known path with
another method -> 405, a body over 6 MB (Lambda's synchronous payload limit) -> 413. A handler
that raises gets 500 ``{"error": "internal_error"}`` and its traceback in the log; a malformed
proxy response gets 502, and so does a request whose worker process died.

Requests are served on threads. An in-process function runs one event at a time
(``LocalFunction`` holds a lock), like one warm Lambda instance: the handlers cache Vowpal Wabbit
workspaces, which are not thread-safe. A ``PooledFunction`` (``local.function_pool``) runs each
event in one of several worker processes instead, like Lambda's concurrent containers.
GET ``pages`` (``/dashboard``...) are the gateway's own, before any route. Given a
``LatencyWindows`` (``local.gateway_latency``), the gateway keeps the latencies of the rank and
recommend requests it answers, for the dashboard.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from local.function_pool import FunctionCrashedError
from local.gateway_latency import LatencyWindows
from local.lambda_events import LocalFunction, match_resource, proxy_event

log = logging.getLogger("serendip.gateway")

MAX_BODY_BYTES = 6 * 1024 * 1024
# Headers the server sets itself; a handler's values for them are not copied.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Route:
    """``method path`` served by a function (``path`` as written in the template)."""

    method: str
    path: str
    function: LocalFunction

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Literal segments win over ``{param}`` ones and a greedy ``{proxy+}`` comes last,
        as in API Gateway."""
        segments = self.path.strip("/").split("/")
        greedy = int(segments[-1].endswith("+}"))
        return (greedy, -sum(1 for s in segments if not s.startswith("{")), len(segments))


def api_routes(functions: Mapping[str, LocalFunction]) -> list[Route]:
    """Every ``Type: Api`` event of the functions, most specific path first."""
    routes = []
    for function in functions.values():
        for name, event in function.events.items():
            if event.get("Type") != "Api":
                continue
            properties = event.get("Properties", {})
            method, path = properties.get("Method"), properties.get("Path")
            if not isinstance(method, str) or not isinstance(path, str):
                raise ValueError(f"{function.name} event {name}: Api needs Method and Path")
            routes.append(Route(method.upper(), path, function))
    return sorted(routes, key=lambda route: route.specificity)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP response to write."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


Page = Callable[[], Reply]


def json_reply(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    """A JSON response."""
    return Reply(
        status,
        [("Content-Type", "application/json"), *headers],
        json.dumps(body, separators=(",", ":")).encode(),
    )


def error_reply(
    status: int, code: str, detail: str, headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    """A JSON error in the service's shape ``{error, detail}``."""
    return json_reply(status, {"error": code, "detail": detail}, headers)


def proxy_reply(response: Any) -> Reply:
    """Turn a Lambda proxy response into an HTTP response (ValueError if malformed)."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        raise ValueError("the handler's result has no integer statusCode")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, values in (response.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), str(value)))
        seen.add(str(name).lower())
    for name, value in (response.get("headers") or {}).items():
        if str(name).lower() not in seen:  # API Gateway: multiValueHeaders win over headers
            headers.append((str(name), str(value)))
    headers = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]
    body = response.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise ValueError("the handler's body is not a string")
    elif response.get("isBase64Encoded"):
        raw = base64.b64decode(body)
    else:
        raw = body.encode()
    if not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return Reply(response["statusCode"], headers, raw)


class Gateway:
    """Dispatches requests to the functions; the HTTP server is ``GatewayServer``."""

    def __init__(
        self,
        routes: list[Route],
        pages: Mapping[str, Page] | None = None,
        latency: LatencyWindows | None = None,
    ) -> None:
        self.routes = routes
        self.pages = dict(pages or {})
        self.latency = latency
        self._in_flight = 0
        self._idle = threading.Condition()

    def find(self, method: str, path: str) -> tuple[Route | None, list[str]]:
        """The route for ``method path``, or None and the methods the path does allow."""
        allowed: list[str] = []
        for route in self.routes:
            if match_resource(route.path, path) is None:
                continue
            if route.method in (method, "ANY"):
                return route, []
            allowed.append(route.method)
        return None, sorted(set(allowed))

    def dispatch(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Reply:
        """Answer one request; a handler that raises or misbehaves gets a 5xx, not an exception."""
        parts = urlsplit(target)
        path = unquote(parts.path) or "/"
        page = self.pages.get(path) if method in ("GET", "HEAD") else None
        if page is not None:
            return self._tracked(page)
        route, allowed = self.find(method, path)
        if route is None:
            if allowed:
                detail = f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}"
                return error_reply(
                    405, "method_not_allowed", detail, [("Allow", ", ".join(allowed))]
                )
            return error_reply(404, "not_found", f"no route for {method} {path}")
        # API Gateway sets X-Forwarded-Proto itself ("https" there), so links a function
        # builds from it (the Personalizer API's nextLink) point back at this plain-HTTP server.
        headers = [(n, v) for n, v in headers if n.lower() != "x-forwarded-proto"]
        headers.append(("X-Forwarded-Proto", "http"))
        event = proxy_event(
            method,
            path,
            resource=route.path,
            body=body,
            headers=dict(headers),  # as API Gateway: the last value of a repeated header
            query=parts.query,
        )
        _add_multi_value_headers(event, headers)
        return self._tracked(lambda: self._timed(route, path, event))

    def _timed(self, route: Route, path: str, event: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        reply = self._invoke(route, event)
        if self.latency is not None:
            self.latency.observe(route.path, path, reply.status, time.perf_counter() - started)
        return reply

    def _tracked(self, answer: Page) -> Reply:
        with self._idle:
            self._in_flight += 1
        try:
            return answer()
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    @staticmethod
    def _invoke(route: Route, event: dict[str, Any]) -> Reply:
        try:
            response = route.function.invoke(event)
        except FunctionCrashedError as error:
            log.error("%s: %s", route.function.name, error)
            return error_reply(502, "bad_gateway", "the function's worker exited; see the log")
        except Exception:
            log.exception(
                "%s raised on %s %s", route.function.name, event["httpMethod"], event["path"]
            )
            return error_reply(500, "internal_error", "the function raised; see the server log")
        try:
            return proxy_reply(response)
        except (ValueError, TypeError) as error:
            log.error("%s returned a malformed proxy response: %s", route.function.name, error)
            return error_reply(502, "bad_gateway", "malformed Lambda proxy response")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request (or page) is being handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


def _add_multi_value_headers(event: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    event["multiValueHeaders"] = multi or None


class _RequestHandler(BaseHTTPRequestHandler):
    """One HTTP connection (keep-alive); every method goes to ``Gateway.dispatch``."""

    protocol_version = "HTTP/1.1"
    server_version = "serendip-local"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body of a
    # keep-alive reply waits for the client's delayed ACK (tens of milliseconds per request).
    disable_nagle_algorithm = True
    timeout = 60  # seconds an idle keep-alive connection is kept
    server: GatewayServer

    def _handle(self) -> None:
        reply = self._read_and_dispatch()
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _read_and_dispatch(self) -> Reply:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return error_reply(411, "length_required", "send a Content-Length, not chunks")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return error_reply(400, "bad_request", "Content-Length is not a number")
        if length < 0:
            self.close_connection = True
            return error_reply(400, "bad_request", "Content-Length is negative")
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is left unread
            detail = f"body is {length} bytes; the limit is {MAX_BODY_BYTES}"
            return error_reply(413, "payload_too_large", detail)
        body = self.rfile.read(length) if length else b""
        try:
            return self.server.gateway.dispatch(self.command, self.path, self.headers.items(), body)
        except Exception:
            log.exception("gateway failed on %s %s", self.command, self.path)
            return error_reply(500, "internal_error", "the gateway failed; see the server log")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.warning("%s - %s", self.address_string(), format % args)


for _method in _METHODS:
    setattr(_RequestHandler, f"do_{_method}", _RequestHandler._handle)


class GatewayServer(ThreadingHTTPServer):
    """The HTTP server of the local API (one thread per connection)."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5 connections; many clients connecting at once (each
    # urllib request is a new connection) overflow it and get their connections reset.
    request_queue_size = 128

    def __init__(self, gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gateway = gateway
        super().__init__((host, port), _RequestHandler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (a free one when 0 was asked)."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="serendip-gateway"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to ``timeout``), close."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout)
            self._thread = None
        if not self.gateway.wait_idle(timeout):
            log.warning("stopping with requests still running after %.0f s", timeout)
        self.server_close()
