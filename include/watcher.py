"""The system-test ``watcher``: a task that fails the DAG run when any other task failed.

A DAG run's state comes from its leaf tasks. When clean-up tasks run with ``trigger_rule=ALL_DONE`` they can
succeed after an earlier task failed, and the run would show success. Put downstream of every task
(``list(dag.tasks) >> watcher()``), this task runs only when one of them failed (``ONE_FAILED``) and then
fails itself, so the run fails; otherwise it is skipped. The same pattern as Airflow's system tests
(``tests_common.test_utils.watcher``), which are not part of an Airflow installation.
"""

from __future__ import annotations

from airflow.sdk import TriggerRule, task


def watcher():
    """Create the watcher task in the current DAG; wire every other task upstream of it."""

    @task(task_id="watcher", trigger_rule=TriggerRule.ONE_FAILED)
    def watch() -> None:
        from airflow.sdk.exceptions import AirflowFailException

        # AirflowFailException: a retry would only fail again.
        raise AirflowFailException("an upstream task failed (see the grid); failing the run so it shows")

    return watch()
