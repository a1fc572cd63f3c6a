"""The Clickstream page's FastAPI app, mounted by Airflow's API server under ``/clickstream``.

Plugin FastAPI apps are served without authentication unless they ask for it, so the app is built with Airflow's
``requires_authenticated()`` as an app-wide dependency: every route (page, assets, data) needs the UI's session
cookie or an ``Authorization: Bearer`` token from ``/auth/token``. The token is checked by the configured auth
manager (``get_auth_manager()``, not ``AuthManagerDep``, which would look for it on this sub-app's state).
Anonymous data requests get 401 JSON; an anonymous browser opening the page is sent to the login page.

Data endpoints are bounded (``hours``, ``limit``, objects read per request) and answer errors as
``{"error": "<what went wrong and what to do>"}``.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import requires_authenticated
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clickstream import data, paths
from clickstream.analytics import ReportShapeError
from clickstream.lake import Lake, LakeDataError
from include.aws import LocalEndpointUnavailable
from include.config import settings

log = logging.getLogger(__name__)

URL_PREFIX = "/clickstream"
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"page.js": "text/javascript", "page.css": "text/css", "icon.svg": "image/svg+xml"}
#: Everything the page loads comes from this app or Airflow's API: no CDN, no inline code.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
)

MAX_HOURS = 24 * 7
MAX_SESSION_HOURS = 48
MAX_LATE_ROWS = 1_000
MAX_DIFFERENCES = 10_000
#: Objects one dataset of one request may read (see clickstream.lake.Budget).
MAX_OBJECTS = 3_000
#: boto3 clients are reused for this long (building one from the connection costs ~0.1 s).
CLIENT_TTL_S = 300.0

_clients: dict[str, tuple[float, Any]] = {}
_clients_lock = threading.Lock()


def aws_client(service: str) -> Any:
    """A boto3 client from the ``aws_default`` connection (include.aws), cached for CLIENT_TTL_S."""
    from include.aws import client

    with _clients_lock:
        cached = _clients.get(service)
        if cached and time.monotonic() - cached[0] < CLIENT_TTL_S:
            return cached[1]
    made = client(service)
    with _clients_lock:
        _clients[service] = (time.monotonic(), made)
    return made


def _forget_clients() -> None:
    with _clients_lock:
        _clients.clear()


def parse_hour(value: str | None, name: str) -> datetime:
    """``2026-11-27T10``, ``2026-11-27T10:00``, ``…:00Z`` or ``+00:00`` as an aware UTC hour; None = now's."""
    if value is None or value == "":
        return paths.current_hour_end()
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text if len(text) > 13 else text + ":00")
    except ValueError:
        raise ValueError(f"{name} must be an ISO hour like 2026-11-27T10:00:00Z, got {value!r}") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if parsed.minute or parsed.second or parsed.microsecond:
        raise ValueError(f"{name} must be the start of an hour, got {value!r}")
    return parsed


def _lake() -> Lake:
    return Lake(aws_client("s3"), settings().bucket)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _is_page_request(request: Request) -> bool:
    """The page itself (not its assets or data): what a browser opens, so a login redirect helps."""
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    return path.startswith(root) and path[len(root) :] in ("", "/")


def _airflow_root(request: Request) -> str:
    """Airflow's base path as the browser sees it: this app's root path without ``/clickstream``."""
    root = request.scope.get("root_path", "").rstrip("/")
    return (root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else root) + "/"


def create_app() -> FastAPI:
    app = FastAPI(
        title="Clickstream page",
        description="Reconciliation, sessions, late events, quarantine and the Flink app, for the Airflow UI.",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and _is_page_request(request):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), 303)
        message = str(exc.detail)
        if exc.status_code == 401:
            message = (
                f"{message}: log in to Airflow, or send 'Authorization: Bearer <token from /auth/token>'"
            )
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part != "query")
            problems.append(f"parameter {where!r}: {err.get('msg')} (got {err.get('input')!r})")
        return _error(400, "; ".join(problems))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        if isinstance(exc, ReportShapeError):
            return _error(502, f"the reconciliation report is not in the expected shape: {exc}")
        return _error(400, str(exc))

    @app.exception_handler(LocalEndpointUnavailable)
    async def endpoint_down(request: Request, exc: LocalEndpointUnavailable) -> JSONResponse:
        _forget_clients()
        return _error(503, str(exc))

    @app.exception_handler(BotoCoreError)
    async def aws_unreachable(request: Request, exc: BotoCoreError) -> JSONResponse:
        _forget_clients()
        return _error(503, f"cannot reach AWS through the 'aws_default' connection: {exc}")

    @app.exception_handler(ClientError)
    async def aws_refused(request: Request, exc: ClientError) -> JSONResponse:
        err = exc.response.get("Error", {})
        return _error(
            502,
            f"AWS {exc.operation_name} failed with {err.get('Code')}: {err.get('Message')} "
            f"(bucket {settings().bucket!r}, connection 'aws_default')",
        )

    @app.exception_handler(LakeDataError)
    async def bad_data(request: Request, exc: LakeDataError) -> JSONResponse:
        return _error(502, f"unreadable data in the lake: {exc}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Clickstream page: %s failed", request.url.path)
        return _error(500, f"internal error in the Clickstream plugin: {type(exc).__name__}: {exc}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> HTMLResponse:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        root = request.scope.get("root_path", "").rstrip("/") + "/"
        html = html.replace("__APP_ROOT__", root).replace("__AIRFLOW_ROOT__", _airflow_root(request))
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            return _error(404, f"no asset {name!r} (known: {', '.join(sorted(ASSETS))})")
        return Response(
            (STATIC / name).read_bytes(), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"}
        )

    @app.get("/api/hours")
    def hours(
        hours: int = Query(24, ge=1, le=MAX_HOURS, description="How many hours, ending at `end`."),
        end: str | None = Query(None, description="Exclusive end hour (UTC); default: the end of this hour."),
    ) -> dict[str, Any]:
        """Reconciliation status of every hour of the window, newest first."""
        window = paths.HourWindow.ending_at(parse_hour(end, "end"), hours)
        return data.reconciliation_hours(_lake(), settings(), window)

    @app.get("/api/report")
    def report(
        hour: str = Query(..., description="The reconciled hour, e.g. 2026-11-27T10:00:00Z."),
        max_differences: int = Query(1_000, ge=0, le=MAX_DIFFERENCES),
    ) -> JSONResponse:
        """One hour's report.json (differences capped at ``max_differences``)."""
        the_hour = parse_hour(hour, "hour")
        found = data.report(_lake(), settings(), the_hour, max_differences)
        if found is None:
            key = paths.report_key(settings(), the_hour)
            return _error(
                404,
                f"no reconciliation report for {paths.iso_hour(the_hour)} (s3://{settings().bucket}/{key})",
            )
        return JSONResponse(found)

    @app.get("/api/sessions")
    def sessions(
        hours: int = Query(6, ge=1, le=MAX_SESSION_HOURS),
        end: str | None = Query(None),
    ) -> dict[str, Any]:
        """Sessions per minute (stream vs batch), stream events per minute, session duration histograms."""
        window = paths.HourWindow.ending_at(parse_hour(end, "end"), hours)
        return data.session_analytics(_lake(), settings(), window, MAX_OBJECTS)

    @app.get("/api/late-events")
    def late_events(
        hours: int = Query(24, ge=1, le=MAX_HOURS),
        end: str | None = Query(None),
        limit: int = Query(100, ge=1, le=MAX_LATE_ROWS),
    ) -> dict[str, Any]:
        """The newest rows of the stream's late-event ledger (by arrival time)."""
        window = paths.HourWindow.ending_at(parse_hour(end, "end"), hours)
        return data.late_events(_lake(), settings(), window, limit, MAX_OBJECTS)

    @app.get("/api/quarantine")
    def quarantine(
        hours: int = Query(24, ge=1, le=MAX_HOURS),
        end: str | None = Query(None),
    ) -> dict[str, Any]:
        """Quarantined records by reason: compaction (manifests) and the stream's rejected ledger."""
        window = paths.HourWindow.ending_at(parse_hour(end, "end"), hours)
        return data.quarantine(_lake(), settings(), window, MAX_OBJECTS)

    @app.get("/api/flink")
    def flink() -> dict[str, Any]:
        """The Managed Flink application's status (kinesisanalyticsv2 DescribeApplication)."""
        return data.flink_status(aws_client("kinesisanalyticsv2"), settings())

    return app
