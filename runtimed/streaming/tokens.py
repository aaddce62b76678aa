"""Single-use, short-lived tokens: the only credential a streaming URL carries."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from runtimed.errors import Unavailable
from runtimed.streaming.requests import StreamRequest

# kubelet's defaults: a URL is good for one minute, at most 1000 wait at once.
TOKEN_TTL = 60.0
MAX_IN_FLIGHT = 1000


class RequestCache:
    """Requests waiting for their client to connect, by token, oldest first."""

    def __init__(
        self,
        ttl: float = TOKEN_TTL,
        max_in_flight: int = MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StreamRequest]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            token, (deadline, _req) = next(iter(self._entries.items()))
            if deadline > now:
                break
            del self._entries[token]

    def insert(self, request: StreamRequest) -> str:
        self._expire()
        if len(self._entries) >= self.max_in_flight:
            raise Unavailable(
                f"{self.max_in_flight} streaming requests are waiting for their clients already;"
                " try again later"
            )
        token = secrets.token_urlsafe(18)
        self._entries[token] = (self._clock() + self.ttl, request)
        return token

    def consume(self, token: str) -> StreamRequest | None:
        """The request, once: a used or expired token is gone."""
        self._expire()
        entry = self._entries.pop(token, None)
        return None if entry is None else entry[1]
