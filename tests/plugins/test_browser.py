"""The Clickstream page in a real browser: Debian's chromium, headless, driven by Playwright.

Logs in through the Airflow UI (simple auth manager, generated password), opens the "Clickstream" entry of the
navigation, and checks the page inside the UI's frame against the JSON the endpoints return for the seeded
data: every hour's status in the table and the heatmap, the charts' series, the quarantine bars, the late
ledger, the Flink status. Screenshots go to ``.local/test-artifacts/plugins/``. A missing browser fails the
test (``make test`` installs it with apt-get); it never skips.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from clickstream import data, paths

from include.config import settings
from include.reconciliation import layout as reconciliation_layout

pytestmark = pytest.mark.integration

VIEWPORT = {"width": 1440, "height": 1000}
TIMEOUT_MS = 60_000


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Debian's chromium is not installed, so the Clickstream page cannot be tested in a browser: "
            "run `make browser` (sudo apt-get install -y chromium)"
        )
    return path


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `uv sync` installs it with the dev dependency group")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
        except Exception as exc:
            pytest.fail(f"chromium at {executable} did not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def logged_in(browser, api_server):
    """A browser context logged in as the admin user through the UI's login form."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{api_server.url}/")
    page.locator("input[name='username']").fill("operator")
    page.locator("input[name='password']").fill(api_server.passwords["operator"])
    page.locator("button[type='submit']").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    assert any(c["name"] == "_token" for c in context.cookies()), "login did not set Airflow's _token cookie"
    yield page
    context.close()


def _api(page, api_server, path: str) -> dict:
    """An endpoint's JSON fetched with the browser's cookies (the same credentials the page uses)."""
    response = page.request.get(f"{api_server.url}/clickstream/{path}")
    assert response.ok, (path, response.status, response.text())
    return response.json()


def test_the_clickstream_page_shows_what_the_backend_data_implies(
    logged_in, api_server, seeded, artifacts_dir
):
    page = logged_in
    page.get_by_role("link", name="Clickstream").first.click()
    page.wait_for_url("**/plugin/clickstream**")
    frame = page.frame_locator("iframe[title='Clickstream']")
    frame.locator("body[data-loaded='true']").wait_for()
    page.screenshot(path=str(artifacts_dir / "ui-clickstream.png"))

    hours = _api(page, api_server, "api/hours?hours=24")
    sessions = _api(page, api_server, "api/sessions?hours=24")
    late = _api(page, api_server, "api/late-events?hours=24&limit=25")
    quarantine = _api(page, api_server, "api/quarantine?hours=24")
    flink = _api(page, api_server, "api/flink")

    for section in ("reconciliation", "sessions", "durations", "late", "quarantine", "flink"):
        error = frame.locator(f"#{section} > .error")
        assert error.is_hidden(), f"section {section} shows an error: {error.text_content()}"

    # The hours: the backend's statuses, and the seed's (one passing, one failing hour).
    rows = frame.locator("#hours-table tbody tr").evaluate_all(
        """rows => rows.map(r => ({
            hour: r.dataset.hour, status: r.dataset.status,
            badge: r.querySelector('.badge').textContent,
            rate: r.querySelector('.match-rate').textContent,
            counts: Object.fromEntries([...r.querySelectorAll('td.cause')].map(td => [td.dataset.cause, td.textContent])),
            backfill: r.querySelectorAll('button.backfill').length,
            runs: r.querySelector('td.dag-run a').getAttribute('href'),
        }))"""
    )
    expected = [h for h in hours["hours"] if h["report"] or h["compaction"]]
    # An hour links to its reconciliation run when Airflow has one for it (another test module may have run the
    # DAG in this session's database), else to the DAG's runs list: ask Airflow's own API, as the page does.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "_token")
    runs = page.request.get(
        f"{api_server.url}/api/v2/dags/{data.RECONCILIATION_DAG_ID}/dagRuns?limit=100&order_by=-logical_date",
        headers={"Authorization": f"Bearer {token}"},
    )
    run_by_hour: dict[str, str] = {}
    if runs.ok:  # 404 while the DAG is not in this database: every hour links to the runs list
        for run in runs.json()["dag_runs"]:
            if run.get("data_interval_start"):
                hour = (
                    datetime.fromisoformat(run["data_interval_start"]).astimezone(UTC).strftime("%Y-%m-%dT%H")
                )
                run_by_hour.setdefault(hour, run["dag_run_id"])
    assert [(r["hour"], r["status"]) for r in rows] == [(h["hour"], h["status"]) for h in expected]
    for row, hour in zip(rows, expected, strict=True):
        assert row["badge"] == hour["status"].replace("_", " ", 1)
        assert row["backfill"] == (1 if hour["status"] == "failed" else 0)
        run_id = run_by_hour.get(hour["hour"][:13])
        assert row["runs"] == (
            f"/dags/{data.RECONCILIATION_DAG_ID}/runs/{quote(run_id, safe='')}"
            if run_id
            else f"/dags/{data.RECONCILIATION_DAG_ID}/runs"
        )
        if hour["counts"] is not None:
            assert row["rate"] == f"{100 * hour['match_rate']:.1f} %"
            assert {c: int(v.replace(",", "")) for c, v in row["counts"].items()} == {
                c: hour["counts"][c] for c in hours["causes"]
            }
    shown = {r["hour"]: r["status"] for r in rows}
    for hour, report in seeded.reports.items():
        assert shown[paths.iso_hour(hour)] == report["status"]
    assert shown[paths.iso_hour(seeded.passing_hour)] == "passed"
    assert shown[paths.iso_hour(seeded.failing_hour)] == "failed"

    cells = frame.locator("#heatmap-svg rect.cell").evaluate_all(
        "cells => cells.map(c => [c.dataset.hour, c.dataset.status])"
    )
    assert dict(cells) == {h["hour"]: h["status"] for h in hours["hours"]}

    # Sessions per minute: one point per minute, totals equal to the endpoint's (and the seed has sessions).
    for series, key in (("stream", "stream_sessions"), ("batch", "batch_sessions")):
        path = frame.locator(f"#sessions-svg path[data-series='{series}']")
        assert int(path.get_attribute("data-points")) == len(sessions["minutes"])
        assert int(path.get_attribute("data-total")) == sum(sessions[key]) > 0
        assert path.get_attribute("d").count("L") == len(sessions["minutes"]) - 1
    bars = frame.locator("#durations-svg rect.bar").evaluate_all(
        "bars => bars.map(b => [b.dataset.series, b.dataset.category, Number(b.dataset.value)])"
    )
    durations = sessions["durations"]
    assert sorted(map(tuple, bars)) == sorted(
        [
            (s, label, durations[s][i])
            for s in ("stream", "batch")
            for i, label in enumerate(durations["bins"])
        ]
    )

    # Quarantine and the stream's rejected ledger, bar by bar.
    for chart, source in (("chart-quarantine", "compaction"), ("chart-rejected", "stream_rejected")):
        drawn = frame.locator(f"#{chart} rect.bar").evaluate_all(
            "bars => bars.map(b => [b.dataset.reason, Number(b.dataset.value)])"
        )
        assert dict(drawn) == quarantine[source]["by_reason"]
    assert quarantine["compaction"]["by_reason"], "the seed quarantines records"

    late_rows = frame.locator("#late-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert late_rows == [r["event_id"] for r in late["rows"]] and len(late_rows) == min(25, late["total"]) > 0

    assert frame.locator("#flink-status").get_attribute("data-status") == flink["status"]

    # The whole page on its own, for a human to look at.
    own = page.context.new_page()
    own.goto(f"{api_server.url}/clickstream/")
    own.locator("body[data-loaded='true']").wait_for()
    own.screenshot(path=str(artifacts_dir / "clickstream-page.png"), full_page=True)
    own.close()


def test_a_failed_hours_report_and_its_backfill(logged_in, api_server, seeded, artifacts_dir):
    page = logged_in
    page.goto(f"{api_server.url}/plugin/clickstream")
    frame = page.frame_locator("iframe[title='Clickstream']")
    frame.locator("body[data-loaded='true']").wait_for()
    row = frame.locator(f"#hours-table tbody tr[data-hour='{paths.iso_hour(seeded.failing_hour)}']")

    report = seeded.reports[seeded.failing_hour]
    row.get_by_role("button", name="view").click()
    panel = frame.locator("#report-panel")
    panel.locator("pre.differences").wait_for()
    key = reconciliation_layout.report_key(settings(), seeded.failing_hour)
    assert panel.locator("code").text_content() == f"s3://{settings().bucket}/{key}"
    lines = panel.locator("pre.differences").text_content().splitlines()
    shown = min(50, len(report["differences"]))
    assert [json.loads(line) for line in lines[:shown]] == report["differences"][:shown]
    totals = dict(
        zip(
            panel.locator("dl.report-totals dt").all_text_contents(),
            panel.locator("dl.report-totals dd").all_text_contents(),
            strict=True,
        )
    )
    assert totals["batch.sessions"] == f"{report['totals']['batch']['sessions']:,}"
    assert totals["stream.sessions"] == f"{report['totals']['stream']['sessions']:,}"

    row.locator("button.backfill").click()
    row.locator("button.confirm-backfill").click()
    notice = frame.locator("#backfill-result")
    notice.filter(has_not_text="Creating").wait_for()
    text = notice.text_content()
    page.screenshot(path=str(artifacts_dir / "ui-report-and-backfill.png"))

    dag = page.request.get(f"{api_server.url}/api/v2/dags/{data.RECONCILIATION_DAG_ID}")
    if dag.status == 404:
        # The reconciliation DAG is not in this metadata DB: Airflow itself answered, past authentication.
        assert "failed: HTTP 404: " in text and data.RECONCILIATION_DAG_ID in text, text
    else:
        assert dag.ok, dag.text()
        assert f"of {data.RECONCILIATION_DAG_ID} created" in text, text
