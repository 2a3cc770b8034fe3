"""``ServiceConfig``: the HTTP service's own limits and timings, one value object."""

from __future__ import annotations

from dataclasses import dataclass

from offload.errors import ConfigurationError

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Limits of the HTTP service. Every field has its one default."""

    #: largest request body accepted, in bytes (413 beyond it)
    max_body_bytes: int = MIB
    #: requests per second each tenant may make on average (429 beyond it)
    rate_limit: float = 1000.0
    #: requests a tenant may make at once after a quiet period (the token bucket's size)
    rate_burst: int = 2000
    #: requests per second with no or a wrong token each client address may make on average,
    #: and at once (429 beyond; never more than the tenants' limits): guessing tokens is slow
    auth_failure_limit: float = 2.0
    auth_failure_burst: int = 20
    #: seconds between backend reads while a Server-Sent Events stream follows a job
    events_poll: float = 0.2
    #: seconds between keep-alive comments on an idle Server-Sent Events stream
    events_heartbeat: float = 15.0
    #: value of the Retry-After header when the backend is unavailable (503)
    unavailable_retry_after: int = 5
    #: the server listens on a loopback address only; then, without tokens, it answers only
    #: requests whose Host is a loopback name (a defence against DNS rebinding)
    bound_to_loopback: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ConfigurationError("max_body_bytes must be at least 1")
        if min(self.rate_limit, self.auth_failure_limit) <= 0:
            raise ConfigurationError("rate_limit and auth_failure_limit must be > 0")
        if min(self.rate_burst, self.auth_failure_burst) < 1:
            raise ConfigurationError("rate_burst and auth_failure_burst must be at least 1")
        if self.events_poll <= 0 or self.events_heartbeat <= 0:
            raise ConfigurationError("events_poll and events_heartbeat must be > 0 seconds")
