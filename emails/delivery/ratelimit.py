"""A token bucket in Redis, shared by every worker that sends through one provider."""

from __future__ import annotations

import time

from redis import Redis

from emails.delivery.base import Backend, BackendConfigError, SendResult, TransientDeliveryError
from emails.outgoing import OutgoingEmail

# KEYS[1] bucket; ARGV: rate per second, capacity, now (seconds, float)
# Returns 0 when a token was taken, else the seconds until one is free.
TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return tostring(wait)
"""


class RateLimitError(TransientDeliveryError):
    """Over the sending rate: not the provider's refusal, our own bucket's wait."""

    def __init__(self, wait: float) -> None:
        super().__init__("rate_limited", retry_after=wait)


def parse_rate(text: str) -> float:
    """``14/s`` or ``600/m`` -> sends per second."""
    try:
        count, _, unit = text.partition("/")
        per = {"s": 1.0, "m": 60.0, "h": 3600.0}[unit or "s"]
        rate = float(count) / per
    except (KeyError, ValueError) as exc:
        raise BackendConfigError(f"rate {text!r} is not like 14/s or 600/m") from exc
    if rate <= 0:
        raise BackendConfigError("rate must be positive")
    return rate


class RateLimited:
    """Wraps a backend; over the rate, the send is refused as transient with the wait."""

    def __init__(
        self, backend: Backend, redis: Redis, rate: float, *, key: str, clock: object = None
    ) -> None:
        self.backend = backend
        self.redis = redis
        self.rate = rate
        self.capacity = max(1.0, rate)  # bursts of up to one second's worth
        self.key = f"triggerpost:ratelimit:{key}"
        self._take = redis.register_script(TAKE)
        self._clock = clock or time.time

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def supports_idempotency(self) -> bool:
        return self.backend.supports_idempotency

    def acquire(self) -> float:
        """0 if a token was taken, else how long until one is free."""
        now = self._clock()  # type: ignore[operator]
        return float(self._take(keys=[self.key], args=[self.rate, self.capacity, now]))

    def send(self, email: OutgoingEmail) -> SendResult:
        wait = self.acquire()
        if wait > 0:
            raise RateLimitError(wait)
        return self.backend.send(email)

    def close(self) -> None:
        self.backend.close()
