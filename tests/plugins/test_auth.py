"""The page's endpoints on a real API server: closed to anonymous callers, open to any logged-in user, errors as
JSON with a message. Tokens come from the server's own ``/auth/token`` with the simple auth manager's users."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from clickstream import paths

pytestmark = pytest.mark.integration

DATA_PATHS = [
    "/clickstream/api/hours",
    "/clickstream/api/sessions",
    "/clickstream/api/late-events",
    "/clickstream/api/quarantine",
    "/clickstream/api/flink",
]


@pytest.fixture(scope="module")
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=60, follow_redirects=False) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", [*DATA_PATHS, "/clickstream/assets/page.js"])
def test_anonymous_requests_are_refused(http, path):
    response = http.get(path)
    assert response.status_code == 401, response.text
    assert "log in to Airflow" in response.json()["error"]


def test_a_forged_token_is_refused(http):
    response = http.get(DATA_PATHS[0], headers=_bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"))
    assert response.status_code == 403, response.text
    assert response.json() == {"error": "Invalid JWT token"}


@pytest.mark.parametrize("user", ["operator", "watcher"])
def test_logged_in_users_of_any_role_are_served(http, api_server, seeded, user):
    headers = _bearer(api_server.token(user))
    for path in DATA_PATHS:
        response = http.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)
    hours = http.get("/clickstream/api/hours", headers=headers).json()
    statuses = {h["hour"]: h["status"] for h in hours["hours"]}
    assert statuses[paths.iso_hour(seeded.passing_hour)] == "passed"
    assert statuses[paths.iso_hour(seeded.failing_hour)] == "failed"
    asset = http.get("/clickstream/assets/page.js", headers=headers)
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")


def test_the_page_sends_anonymous_browsers_to_the_login_page(http):
    response = http.get("/clickstream/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?next=")


def test_the_page_forbids_outside_scripts(http, api_server):
    response = http.get("/clickstream/", headers=_bearer(api_server.token()))
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert 'src="/clickstream/assets/page.js"' in response.text
    assert 'data-airflow-root="/"' in response.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "/clickstream/api/hours?hours=0",
            "parameter 'hours': Input should be greater than or equal to 1 (got '0')",
        ),
        ("/clickstream/api/sessions?hours=49", "parameter 'hours': Input should be less than or equal to 48"),
        (
            "/clickstream/api/hours?end=yesterday",
            "end must be an ISO hour like 2026-11-27T10:00:00Z, got 'yesterday'",
        ),
        ("/clickstream/api/hours?end=2026-11-27T10:30:00Z", "end must be the start of an hour"),
        (
            "/clickstream/api/late-events?limit=5000",
            "parameter 'limit': Input should be less than or equal to 1000",
        ),
        ("/clickstream/api/report", "parameter 'hour': Field required"),
    ],
)
def test_bad_parameters_get_a_message_naming_them(http, api_server, query, message):
    response = http.get(query, headers=_bearer(api_server.token()))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_a_missing_report_is_a_404_naming_its_key(http, api_server, seeded):
    hour = seeded.passing_hour - timedelta(hours=7)
    response = http.get(
        f"/clickstream/api/report?hour={paths.iso_hour(hour)}", headers=_bearer(api_server.token())
    )
    assert response.status_code == 404
    assert f"dt={hour:%Y-%m-%d}/hr={hour:%H}/report.json" in response.json()["error"]


def test_the_report_endpoint_serves_the_written_report(http, api_server, seeded):
    hour = seeded.failing_hour
    response = http.get(
        f"/clickstream/api/report?hour={paths.iso_hour(hour)}&max_differences=3",
        headers=_bearer(api_server.token()),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["report"]["counts"] == seeded.reports[hour]["counts"]
    assert len(body["report"]["differences"]) == 3


def test_the_plugin_is_registered_without_import_errors(http, api_server):
    headers = _bearer(api_server.token())
    plugins = http.get("/api/v2/plugins", headers=headers).json()["plugins"]
    ours = [p for p in plugins if p["name"] == "clickstream"]
    assert len(ours) == 1
    assert ours[0]["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/clickstream", "name": "Clickstream page"}
    ]
    [view] = ours[0]["external_views"]
    assert (view["name"], view["url_route"], view["href"], view["nav_top_level"]) == (
        "Clickstream",
        "clickstream",
        "/clickstream/",
        True,
    )
    assert http.get("/api/v2/plugins/importErrors", headers=headers).json()["total_entries"] == 0
