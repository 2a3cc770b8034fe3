"""Request-scoped dependencies: the service's state, the caller, and role checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from offload.api.auth import ANONYMOUS, Principal, Role, TokenTable
from offload.api.errors import ApiError
from offload.client import App
from offload.service.config import ServiceConfig
from offload.service.metrics import Metrics
from offload.service.ratelimit import RateLimiter

_bearer = HTTPBearer(auto_error=False, description="an API token: TOKEN of OFFLOAD_TOKENS")


@dataclass(frozen=True, slots=True)
class ServiceState:
    """Everything the routes need, kept on ``fastapi_app.state.service``."""

    app: App
    tokens: TokenTable
    config: ServiceConfig
    metrics: Metrics
    limiter: RateLimiter
    #: what else readiness depends on (``offload up``: its embedded worker); returns why the
    #: service is not ready, or None when it is
    not_ready: Callable[[], str | None] | None = None
    #: the name of the route that answers one job, whose URL ``Location`` headers give (the
    #: FastAPI integration mounts the job routes under names of its own)
    job_route: str = "get_job"
    #: the buckets of callers with no or a wrong token, one per client address
    guesses: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        guesses = RateLimiter(
            min(config.rate_limit, config.auth_failure_limit),
            min(config.rate_burst, config.auth_failure_burst),
        )
        object.__setattr__(self, "guesses", guesses)

    def job_location(self, request: Request, job_id: str) -> str:
        """The URL path of job ``job_id`` where this request was served (root path included)."""
        return request.url_for(self.job_route, job_id=job_id).path


async def service_state(request: Request) -> ServiceState:
    # async on purpose: FastAPI runs a plain-def dependency in its thread pool, one thread hop
    # per request, which costs more than the whole submit under load.
    state: ServiceState = request.app.state.service
    return state


Service = Annotated[ServiceState, Depends(service_state)]


async def authenticate(
    request: Request,
    svc: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; rate-limited per tenant, and a
    caller with no valid token per client address (so guessing tokens is rate-limited too)."""
    try:
        principal = _principal(svc.tokens, credentials)
    except ApiError:
        client = request.client.host if request.client else "unknown"
        _limit(svc.guesses, client, f"address {client}", {"client": client})
        raise
    tenant = principal.tenant
    _limit(svc.limiter, tenant, f"tenant {tenant!r}", {"tenant": tenant})
    return principal


def _limit(limiter: RateLimiter, bucket: str, who: str, details: dict[str, str]) -> None:
    wait = limiter.acquire(bucket)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests for {who}; retry after the delay given",
            details,
            headers={"Retry-After": RateLimiter.retry_after(wait)},
        )


def _principal(tokens: TokenTable, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if not tokens.enabled:
        return ANONYMOUS
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "missing API token: send 'Authorization: Bearer <token>'",
            headers=challenge,
        )
    principal = tokens.lookup(credentials.credentials)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "unknown API token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers holding ``role`` or a stronger one (else 403)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role < role:
            raise ApiError(
                403,
                "forbidden",
                f"this needs the {role.label} role; the token has {principal.role.label}",
                {"required_role": role.label, "role": principal.role.label},
            )
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Role.READ))]
Submitter = Annotated[Principal, Depends(require(Role.SUBMIT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
