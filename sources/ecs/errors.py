"""How the ECS source reads boto3's failures: the error codes, :func:`classify` into
the sources' error hierarchy (never a secret), and "this endpoint lacks the API"."""

from __future__ import annotations

import contextlib

from sources.model import (
    SourceAuthError,
    SourceBadResponse,
    SourceError,
    SourceRateLimited,
    SourceTimeout,
    SourceUnavailable,
)
from sources.redact import html_title, looks_like_html

_UNSUPPORTED_CODES = frozenset(
    {"UnknownOperationException", "InvalidAction", "UnsupportedOperation", "NotImplemented"}
)
_NOT_IMPLEMENTED_CODES = frozenset(
    {
        "NotImplemented",
        "NotImplementedException",
        "NotImplementedError",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "500",
        "501",
    }
)
"""Codes an endpoint without an operation answers it with (``"500"``: botocore's code
for an error answer it could not read, such as an HTML page)."""
NOT_IMPLEMENTED_POLLS = 3
"""Polls in a row whose service-deployments calls all failed "not implemented"-like
before the API is taken as unsupported by this endpoint (a real ECS may answer one
``InternalFailure`` now and then; an endpoint without the API answers it every time)."""
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "Throttling"}
)
_AUTH_CODES = frozenset(
    {
        "ExpiredTokenException",
        "ExpiredToken",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AccessDeniedException",
        "AccessDenied",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)


def classify(exc: BaseException) -> SourceError:
    """Turn a boto3/botocore exception into our error hierarchy (never leaks secrets)."""
    if isinstance(exc, SourceError):
        return exc
    name = type(exc).__name__
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        err = response.get("Error") or {}
        code = str(err.get("Code") or "")
        # Whole: the failure scrubs secrets and only then cuts (sources.redact).
        message = str(err.get("Message") or code)
        meta = response.get("ResponseMetadata") or {}
        http = meta.get("HTTPStatusCode")
        if code in _THROTTLE_CODES or http == 429:
            headers = meta.get("HTTPHeaders") or {}
            retry_after = None
            with contextlib.suppress(TypeError, ValueError):
                retry_after = float(headers.get("retry-after", ""))
            return SourceRateLimited(f"throttled: {message}", retry_after)
        if code in _AUTH_CODES or http in (401, 403):
            return SourceAuthError(f"{code}: {message}")
        if isinstance(http, int) and http >= 500:
            # An HTML error page (a proxy's, a web server's) is shown as its title only.
            page = looks_like_html(message)
            err5 = SourceUnavailable(
                (html_title(message) or "HTML error page") if page else f"HTTP {http}: {message}"
            )
            err5.reason = f"http {http}"
            return err5
        return SourceError(f"{code or name}: {message}")
    if name in ("ConnectTimeoutError", "ReadTimeoutError"):
        return SourceTimeout(f"{name}: {exc}")
    if name in ("EndpointConnectionError", "ConnectionClosedError", "ProxyConnectionError"):
        return SourceUnavailable(f"cannot connect: {exc}")
    if name in (
        "NoCredentialsError",
        "PartialCredentialsError",
        "ProfileNotFound",
        "TokenRetrievalError",
        "SSOTokenLoadError",
        "UnauthorizedSSOTokenError",
        "CredentialRetrievalError",
    ):
        return SourceAuthError(f"credentials: {exc}")
    if name in ("ResponseParserError",) or isinstance(exc, ValueError | KeyError | TypeError):
        return SourceBadResponse(f"unreadable answer: {name}")
    return SourceError(f"{name}: {exc}")


def _unsupported(exc: BaseException) -> bool:
    """Whether ``exc`` says the service-deployments API does not exist here."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return code in _UNSUPPORTED_CODES or type(exc).__name__ == "OperationNotPageableError"


def _not_implemented(exc: BaseException) -> bool:
    """Whether ``exc`` is how an endpoint without an operation answers it: HTTP 501, or
    500 with a "not implemented"-like code or an unreadable (non-JSON, HTML) body."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    error = response.get("Error")
    meta = response.get("ResponseMetadata")
    if not isinstance(error, dict) or not isinstance(meta, dict):
        return False
    http = meta.get("HTTPStatusCode")
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")
    if http == 501:
        return True
    return http == 500 and (code in _NOT_IMPLEMENTED_CODES or not code or looks_like_html(message))


def _not_asked(error: SourceError) -> SourceError:
    """The failure of a call not made because ECS was down: ``error``'s kind and reason."""
    skipped = type(error)(f"not asked, ECS down this poll: {error}")
    skipped.reason = error.reason
    return skipped
