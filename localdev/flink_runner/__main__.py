"""``python -m localdev.flink_runner --job-dir <dir>``: the runner process of one job (see :mod:`.job_process`)."""

import sys

from localdev.flink_runner.job_process import main

if __name__ == "__main__":
    sys.exit(main())
