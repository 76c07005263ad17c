"""Requests per API key: writes and searches, each with its own budget (GRISTMILL_RATE_LIMIT_*).

Counted by the `limits` library in a moving window (no burst of twice the limit across a window's
edge), in memory for one API process or in a shared store (Redis) for several. The quota a request
used is kept on its scope; `RateLimitHeaders` puts it on whatever the answer turns out to be, an
error included, and a refused request is answered 429 with `Retry-After`.
"""

import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gristmill.errors import RateLimited, ServiceUnavailable
from gristmill.settings import Settings

Budget = Literal["writes", "searches"]
SCOPE_KEY = "gristmill.rate_limit"  # where a request's quota waits for its answer


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_at: int  # Unix time when the oldest counted request leaves the window

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining), "X-RateLimit-Reset": str(self.reset_at)}


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.storage_uri = settings.rate_limit_storage_uri
        self.strategy = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))
        self.budgets: dict[Budget, list[RateLimitItem]] = {
            "writes": _parse(settings.rate_limit_writes),
            "searches": _parse(settings.rate_limit_searches),
        }

    def spend(self, budget: Budget, key_id: str) -> Quota | None:
        """Count one request of the key against `budget`; its quota, or RateLimited when spent.
        None when the budget has no limit."""
        items = self.budgets[budget]
        if not items:
            return None
        try:
            # Each hit is atomic in the store; testing first keeps a refused request from spending
            # the budgets of the other limits (`10/second;600/hour`).
            refused = next((item for item in items if not self.strategy.test(item, budget, key_id)), None)
            if refused is None:
                refused = next((item for item in items if not self.strategy.hit(item, budget, key_id)), None)
            windows = [self.strategy.get_window_stats(item, budget, key_id) for item in items]
        except Exception as error:  # noqa: BLE001 - whatever the store's client raises (redis.ConnectionError, ...)
            raise ServiceUnavailable(
                f"the rate-limit store {self.storage_uri.split('@')[-1]} cannot be reached: {error}", code="rate_limit_store_unavailable"
            ) from None
        # The answer tells of the limit that refused it, else of the one closest to refusing.
        index = items.index(refused) if refused is not None else min(range(len(items)), key=lambda i: windows[i].remaining)
        item, stats = items[index], windows[index]
        quota = Quota(limit=item.amount, remaining=max(stats.remaining, 0), reset_at=math.ceil(stats.reset_time))
        if refused is not None:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"this API key has made {item.amount} {budget} in the last {_window(item)}; retry in {retry_after} s",
                details={"budget": budget, "limit": item.amount, "window_seconds": item.get_expiry(), "retry_after": retry_after},
                headers={**quota.headers(), "Retry-After": str(retry_after)},
            )
        return quota


def remember_quota(scope: Scope, quota: Quota | None) -> None:
    if quota is not None:
        scope.setdefault("state", {})[SCOPE_KEY] = quota


class RateLimitHeaders:
    """Pure ASGI: adds the quota a request spent to its answer, whatever raised or answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_quota(message: Message) -> None:
            quota: Quota | None = scope.get("state", {}).get(SCOPE_KEY)
            if message["type"] == "http.response.start" and quota is not None:
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in quota.headers().items() if k.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_quota)


def _parse(text: str) -> list[RateLimitItem]:
    return list(parse_many(text)) if text.strip() else []


def _window(item: RateLimitItem) -> str:
    seconds = item.get_expiry()
    return f"{seconds} s" if seconds < 60 or seconds % 60 else f"{seconds // 60} min"
