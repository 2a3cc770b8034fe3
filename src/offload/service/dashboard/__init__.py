"""The dashboard: one static page at ``/`` (also at ``/dashboard/``) and its script and style
under ``/dashboard/``.

No build step and nothing from a CDN: three files shipped in the package, served with a strict
Content-Security-Policy (scripts, styles and requests only from this origin; no inline code),
so job data the page shows can never run as code. The page reads the ``/v1`` API like any
other client, with the token the user gives it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

from offload.api.errors import ApiError

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: the overview pages, each at ``/dashboard/<page>.html``, live over ``/v1/overview/<page>``
PAGES = ("schedules", "limits", "workflows", "workers", "queues")
#: the files served, with their content types; anything else is a 404
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    # the overview pages (schedules, limits, workflows, workers, queues) and their script
    **{f"{page}.html": "text/html; charset=utf-8" for page in PAGES},
    "pages.js": "text/javascript; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()  # offload: ignore[OFF107]


def _serve(name: str) -> Response:
    return Response(_read(name), media_type=FILES[name], headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
@router.api_route("/dashboard", methods=["GET", "HEAD"])
@router.api_route("/dashboard/", methods=["GET", "HEAD"])
async def index() -> Response:
    """The dashboard page (its jobs page), also at ``/dashboard`` and ``/dashboard/``: its
    links and files are absolute paths, so it works from either."""
    return _serve("index.html")


@router.api_route("/dashboard/{name}", methods=["GET", "HEAD"])
async def static(name: str) -> Response:
    """The page's script and style sheet, and the overview pages."""
    if name not in FILES:
        raise ApiError(404, "not_found", f"no dashboard file {name!r}", headers=HEADERS)
    return _serve(name)
