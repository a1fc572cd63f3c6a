"""Clickstream sessions: one contract rendered into Flink SQL (streaming) and DuckDB SQL (batch).

* :mod:`.contract` - :class:`SessionContract`, reject rules, session id, output columns.
* :mod:`.templates` - ``render(template_name, contract, **connector_options)`` over ``include/sql``.
* :mod:`.flink_job` - the Managed Flink job from property groups (shared by AWS and local runs).
* :mod:`.flink_runner` - local PyFlink runs in a separate process: ``start_job``/``stop_job``/``run_bounded``.
* :mod:`.batch` - the DuckDB batch sessions, metrics and rejects.
* :mod:`.reference` - the same definitions in plain Python (the tests' oracle).
* :mod:`.inputs` - strict reading of a JSON-lines events file for the CLI.
"""
