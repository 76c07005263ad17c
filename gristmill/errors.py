"""Every error Gristmill reports: a type, a stable code, an HTTP status and a message a user can act on.

Lower layers' exceptions (httpx, pypdf, LanceDB) are translated into these once, at the boundary
where they are caught; the API renders any of them as `{"error": {type, code, message, details}}`.
"""

from typing import Any, ClassVar


class GristmillError(Exception):
    """Base of every error Gristmill reports on purpose."""

    type: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.headers: dict[str, str] = {}  # HTTP headers its answer carries (Retry-After)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.code, "message": self.message, "details": self.details}

    def __reduce__(self):  # errors cross process boundaries (the parse sandbox, Prefect results)
        return (_rebuild_error, (type(self), self.message, self.code, self.details))


def _rebuild_error(cls: type[GristmillError], message: str, code: str, details: Any) -> GristmillError:
    return cls(message, code=code, details=details)


# --- request errors: the caller can fix them -------------------------------------------------


class InvalidRequest(GristmillError):
    """The request is malformed or asks for something impossible."""

    type = "invalid_request"
    status = 422
    default_code = "invalid_request"


class BlockedUrl(GristmillError):
    """A URL whose host is an address Gristmill does not send requests to (loopback, private, metadata...)."""

    type = "invalid_request"
    status = 400
    default_code = "blocked_url"


class AuthenticationFailed(GristmillError):
    """No API key, or one that is unknown or revoked."""

    type = "authentication_error"
    status = 401
    default_code = "invalid_api_key"


class PermissionDenied(GristmillError):
    """The key is valid but lacks the scope the operation needs."""

    type = "permission_error"
    status = 403
    default_code = "insufficient_scope"


class NotFound(GristmillError):
    """The object does not exist, or belongs to another workspace."""

    type = "not_found"
    status = 404
    default_code = "not_found"


class Conflict(GristmillError):
    """The request clashes with what is stored (a taken name, duplicate content)."""

    type = "conflict"
    status = 409
    default_code = "conflict"


class SourceCancelled(Conflict):
    """The source's job was cancelled: the flow run stops working on it."""

    default_code = "source_cancelled"


class PayloadTooLarge(GristmillError):
    """Content over the configured size limit."""

    type = "payload_too_large"
    status = 413
    default_code = "payload_too_large"


class UnsupportedType(GristmillError):
    """A content type or file format Gristmill cannot parse."""

    type = "unsupported_type"
    status = 415
    default_code = "unsupported_type"


class RateLimited(GristmillError):
    """The API key has used up its requests for now; the answer says when to retry."""

    type = "rate_limit_error"
    status = 429
    default_code = "rate_limited"
    retryable = True

    def __init__(
        self, message: str, *, code: str | None = None, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.headers = headers or {}


class ServiceUnavailable(GristmillError):
    """A component Gristmill depends on (database, Prefect, embeddings) is not reachable."""

    type = "service_unavailable"
    status = 503
    default_code = "service_unavailable"
    retryable = True


# --- processing errors: recorded on a source ---------------------------------------------------


class FetchError(GristmillError):
    """The source's bytes could not be obtained (unreachable URL, HTTP error, missing file)."""

    type = "fetch_error"
    status = 422
    default_code = "fetch_failed"


class TransientFetchError(FetchError):
    """A fetch failure that may pass: timeouts, connection resets, 5xx and 429 answers."""

    retryable = True


class ParseError(GristmillError):
    """The bytes could not be turned into text (corrupt, encrypted, not text, no text layer)."""

    type = "parse_error"
    status = 422
    default_code = "unparseable"


class EmbeddingError(GristmillError):
    """The embeddings endpoint failed or answered something unusable."""

    type = "embedding_error"
    status = 503
    default_code = "embedding_failed"
    retryable = True


class EmbeddingRejected(EmbeddingError):
    """The embeddings endpoint refused the request or answered something unusable; retrying will not help."""

    status = 502  # the upstream endpoint's doing, not the caller's
    default_code = "embedding_rejected"
    retryable = False


class StorageError(GristmillError):
    """The chunk store or database refused a write."""

    type = "storage_error"
    status = 500
    default_code = "storage_failed"


# --- delivery errors: recorded on a webhook delivery -----------------------------------------


class WebhookDeliveryFailed(GristmillError):
    """A webhook receiver did not answer 2xx in time (an error status, a redirect, a timeout, a
    refused connection); the delivery is tried again later."""

    type = "webhook_error"
    status = 502
    default_code = "webhook_delivery_failed"
    retryable = True


class WebhookGivenUp(WebhookDeliveryFailed):
    """A webhook delivery failed for the last time (a day of retries, or an address that is refused)."""

    default_code = "webhook_given_up"
    retryable = False
