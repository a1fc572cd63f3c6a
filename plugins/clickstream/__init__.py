"""The Clickstream page of the Airflow UI: a FastAPI app (``api``) over the lake's data (``data``, ``lake``).

Airflow imports only ``plugins/clickstream_plugin.py`` (``.airflowignore`` keeps its plugin loader out of this
package, which it would otherwise import file by file as top-level modules); the package is imported by name,
the plugins folder being on ``sys.path`` in every Airflow component.
"""
