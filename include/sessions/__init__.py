"""Clickstream sessions: one contract rendered into Flink SQL (streaming) and DuckDB SQL (batch).

* :mod:`.contract` - :class:`SessionContract`, reject rules, session id, output columns.
* :mod:`.templates` - ``render(template_name, contract, **connector_options)`` over ``include/sql``.
* :mod:`.batch` - the DuckDB batch sessions, metrics and rejects.

The Managed Flink job built from the same contract is :mod:`include.flink_app`; running it on one machine
(:mod:`localdev.flink_runner`), the plain-Python oracle (:mod:`localdev.reference`) and the CLI's input checks
(:mod:`localdev.event_files`) live in :mod:`localdev`.
"""
