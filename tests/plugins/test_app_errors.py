"""The app's failure answers, in process: a token from Airflow's configured auth manager, the real app, and the
failures made real (the ``aws_default`` connection pointing at a closed port, an unreadable object in the lake).
"""

from __future__ import annotations

import pytest
from clickstream import api, paths
from fastapi.testclient import TestClient

from include.config import settings
from localdev.airflow_env import aws_connection_uri
from tests.plugins.airflow_server import free_port

DATA_PATHS = ["/api/hours", "/api/sessions", "/api/late-events", "/api/quarantine", "/api/flink"]


@pytest.fixture(scope="module")
def app_client(airflow_db):
    """The app with a viewer's token (Airflow checks a token's revocation in the metadata DB, hence the DB)."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="tester", role="viewer"))
    with TestClient(api.create_app(), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def fresh_clients():
    api._forget_clients()
    yield
    api._forget_clients()


@pytest.mark.parametrize("path", DATA_PATHS)
def test_an_unreachable_aws_endpoint_is_a_503_that_says_what_to_do(
    app_client, fresh_clients, monkeypatch, path
):
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(port))
    response = app_client.get(path)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert f"http://127.0.0.1:{port}" in error and "is not reachable" in error and "make up" in error


@pytest.mark.integration
def test_an_unreadable_object_is_a_502_naming_it(app_client, fresh_clients, seeded, aws_clients):
    hour = seeded.failing_hour
    key = f"{paths.sink_hour_prefix(settings(), paths.LATE_SINK, hour)}part-broken-0-0"
    s3 = aws_clients("s3")
    s3.put_object(Bucket=settings().bucket, Key=key, Body=b'{"event_id": "e1"}\nnot json\n')
    try:
        response = app_client.get(f"/api/late-events?hours=2&end={paths.iso_hour(seeded.window_end)}")
    finally:
        s3.delete_object(Bucket=settings().bucket, Key=key)
    assert response.status_code == 502, response.text
    assert f"s3://{settings().bucket}/{key} line 2 is not valid JSON" in response.json()["error"]


def test_unknown_assets_are_a_404_listing_the_known_ones(app_client):
    response = app_client.get("/assets/../api.py")
    assert response.status_code == 404
    response = app_client.get("/assets/secrets.txt")
    assert response.status_code == 404
    assert response.json() == {"error": "no asset 'secrets.txt' (known: icon.svg, page.css, page.js)"}


def test_parse_hour_accepts_the_usual_spellings_and_refuses_the_rest():
    assert paths.iso_hour(api.parse_hour("2026-11-27T10", "end")) == "2026-11-27T10:00:00Z"
    assert paths.iso_hour(api.parse_hour("2026-11-27T10:00:00Z", "end")) == "2026-11-27T10:00:00Z"
    assert paths.iso_hour(api.parse_hour("2026-11-27T12:00:00+02:00", "end")) == "2026-11-27T10:00:00Z"
    with pytest.raises(ValueError, match="hour must be the start of an hour, got '2026-11-27T10:05'"):
        api.parse_hour("2026-11-27T10:05", "hour")
    with pytest.raises(ValueError, match="hours must be between 1 and"):
        paths.HourWindow.ending_at(api.parse_hour("2026-11-27T10", "end"), 0)
