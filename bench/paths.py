"""Where the harness keeps things.

``bench/work/`` is git-ignored: installed peers, the RGW's files, generated configurations
and the logs of every run. ``bench/results/`` holds what is published.
"""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
#: Generated data files (tmpfs: reading them costs the ceiling run no disk I/O).
SHM_DIR = Path("/dev/shm") / "s3s3-bench"
