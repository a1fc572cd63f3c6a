"""The Managed Service for Apache Flink application: entry point (``main.py``) and zip packaging (``package.py``)."""
