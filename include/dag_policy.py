"""DAG policy shared by every DAG: owner, retries, alerting, and the tag taxonomy.

``tests/dags/test_dag_integrity.py`` enforces it, so the policy lives in code rather than in a wiki.
Tags: every DAG carries ``clickstream``, exactly one ``layer:*`` and exactly one ``tier:*`` tag.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

OWNER = "clickstream-data-eng"

#: The fixed start of the DAGs' schedules; backfills may go back to here.
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)

PROJECT_TAG = "clickstream"
LAYER_TAGS = frozenset({"layer:setup", "layer:ingest", "layer:streaming", "layer:batch", "layer:quality"})
TIER_TAGS = frozenset({"tier:1", "tier:2", "tier:3"})
APPROVED_TAGS = frozenset({PROJECT_TAG}) | LAYER_TAGS | TIER_TAGS


def default_args(retries: int = 2) -> dict:
    """Owner, retries with exponential backoff, and the SNS failure alert (see include.callbacks)."""
    from include.callbacks import alert_on_failure

    return {
        "owner": OWNER,
        "retries": retries,
        # Tests and the demo shorten this with CLICKSTREAM_RETRY_DELAY_SECONDS; deployments keep 30 s.
        "retry_delay": timedelta(seconds=float(os.environ.get("CLICKSTREAM_RETRY_DELAY_SECONDS", "30"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": alert_on_failure,
    }


def tags(layer: str, tier: int) -> list[str]:
    layer_tag, tier_tag = f"layer:{layer}", f"tier:{tier}"
    if layer_tag not in LAYER_TAGS or tier_tag not in TIER_TAGS:
        raise ValueError(f"unknown tag {layer_tag!r} or {tier_tag!r}; approved: {sorted(APPROVED_TAGS)}")
    return [PROJECT_TAG, layer_tag, tier_tag]
