"""Application records and their persistence: one JSON file (``applications.json``) holds every application
with its configuration, snapshots and operations; it is rewritten atomically after every change, so a killed
companion restarts from the last answered call. What the records look like through the API is
:mod:`.descriptions`.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from localdev.aws.base import AwsError
from localdev.aws.firehose.streams import atomic_write_json

#: Operations kept per application (ListApplicationOperations); older ones are dropped.
MAX_OPERATIONS_KEPT = 200


def not_found(name: str, account_id: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Application {name} under account {account_id} not found")


def now_epoch() -> float:
    return datetime.now(UTC).timestamp()


class ApplicationStore:
    """Every application of this companion, persisted as one JSON file after every change."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "applications.json"
        self.lock = threading.RLock()
        self.apps: dict[str, dict] = {}
        if self.path.exists():
            self.apps = json.loads(self.path.read_text())

    @staticmethod
    def key(region: str, name: str) -> str:
        return f"{region}/{name}"

    def save(self) -> None:
        with self.lock:
            atomic_write_json(self.path, self.apps)

    def get(self, region: str, name: str, account_id: str) -> dict:
        app = self.apps.get(self.key(region, name))
        if app is None:
            raise not_found(name, account_id)
        return app

    def by_arn(self, arn: str, account_id: str) -> dict:
        for app in self.apps.values():
            if app["arn"] == arn:
                return app
        raise AwsError(
            "ResourceNotFoundException", f"No application with ARN {arn} under account {account_id}"
        )


def new_operation(app: dict, operation: str, version_change: tuple[int, int] | None = None) -> dict:
    """Record an operation (ListApplicationOperations); returns it so the caller can finish it later."""
    op = {
        "id": uuid.uuid4().hex[:20],
        "operation": operation,
        "status": "IN_PROGRESS",
        "start": now_epoch(),
        "end": None,
        "error": None,
        "version_change": list(version_change) if version_change else None,
    }
    app.setdefault("operations", []).append(op)
    del app["operations"][:-MAX_OPERATIONS_KEPT]
    return op


def finish_operation(app: dict, op_id: str | None, status: str, error: str | None = None) -> None:
    for op in app.get("operations", []):
        if op["id"] == op_id and op["status"] == "IN_PROGRESS":
            op["status"] = status
            op["end"] = now_epoch()
            op["error"] = error
