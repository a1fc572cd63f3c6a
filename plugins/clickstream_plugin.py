"""Registers the Clickstream page: a "Clickstream" entry in the Airflow UI's navigation and its FastAPI app.

The entry is an external view with a ``url_route``, so the UI shows the page (served by the app under
``/clickstream/``) inside its own frame at ``/plugin/clickstream``. The app is built on first use, so the
scheduler, DAG processor and workers, which load plugins too, only pay for this small module.
"""

from __future__ import annotations

from functools import cache

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/clickstream"


@cache
def _app():
    from clickstream.api import create_app

    return create_app()


class ClickstreamPlugin(AirflowPlugin):
    name = "clickstream"
    external_views = [
        {
            "name": "Clickstream",
            "href": f"{URL_PREFIX}/",
            "url_route": "clickstream",
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{URL_PREFIX}/assets/icon.svg",
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict]:
        return [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Clickstream page"}]
