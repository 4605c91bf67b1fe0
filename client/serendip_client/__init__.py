"""Python client of Serendip's ``/v1`` HTTP API (standard library only).

>>> from serendip_client import Serendip
>>> client = Serendip("http://127.0.0.1:3000", "sk_...", webhook_secret="whsec_...")

``client.rank(...)`` then ``client.post_reward(...)``; every method is one route of the API,
errors are ``SerendipError`` subclasses, and the retry rules are in ``serendip_client._http``.
"""

from serendip_client._http import (
    VERSION,
    HttpRequest,
    HttpResponse,
    Retrier,
    Transport,
    UrllibTransport,
)
from serendip_client.client import Serendip
from serendip_client.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    SerendipConnectionError,
    SerendipError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
)
from serendip_client.signing import SIGNATURE_HEADER, sign, signature

__version__ = VERSION

__all__ = [
    "SIGNATURE_HEADER",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "HttpRequest",
    "HttpResponse",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "Retrier",
    "Serendip",
    "SerendipConnectionError",
    "SerendipError",
    "ServerError",
    "Transport",
    "UnauthorizedError",
    "UnavailableError",
    "UrllibTransport",
    "ValidationError",
    "__version__",
    "sign",
    "signature",
]
