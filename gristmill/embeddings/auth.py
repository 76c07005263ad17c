"""The embeddings server's lock: a bearer key, when it is started with one (`gristmill serve` and the
standalone CLI always start it so). /healthz stays open: it tells only that the model is loaded."""

import secrets
from typing import Annotated

from fastapi import Header, Request

from gristmill.errors import AuthenticationFailed


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationFailed(
            "this embeddings server requires 'Authorization: Bearer <key>' (GRISTMILL_EMBEDDINGS_API_KEY)",
            code="invalid_api_key",
        )
