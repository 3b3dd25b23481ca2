"""``python -m gateway.report``: build one block report in this process (see job.py)."""

from gateway.report.job import child_main

raise SystemExit(child_main())
