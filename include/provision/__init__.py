"""Provisioning of the pipeline's AWS resources: :mod:`.resources` creates each one idempotently,
:mod:`.setup` and :mod:`.teardown` are what the ``clickstream_setup`` / ``clickstream_teardown`` DAGs' tasks
call (Airflow-free, so tests and scripts can call them too).

The ``ensure_*`` functions are re-exported here for scripts (bench/) that provision without Airflow.
"""

from include.provision.resources import (
    catalog_tables,
    ensure_alerts,
    ensure_bucket,
    ensure_delivery_stream,
    ensure_flink_application,
    ensure_glue_database,
    ensure_glue_table,
    ensure_stream,
)

__all__ = [
    "catalog_tables",
    "ensure_alerts",
    "ensure_bucket",
    "ensure_delivery_stream",
    "ensure_flink_application",
    "ensure_glue_database",
    "ensure_glue_table",
    "ensure_stream",
]
