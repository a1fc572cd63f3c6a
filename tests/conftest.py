"""Test session setup: Airflow runs against a throwaway home and the local AWS endpoint's connection."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from include import local_airflow

_HOME = Path(os.environ.get("CLICKSTREAM_TEST_HOME") or tempfile.mkdtemp(prefix="clickstream-tests-"))
TEST_PORT = int(os.environ.get("CLICKSTREAM_TEST_PORT", "4666"))
local_airflow.apply(local_airflow.local_env(home=_HOME / "airflow", port=TEST_PORT))
