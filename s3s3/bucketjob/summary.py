"""What a run of the bucket job did: per destination and in all, the failures kept with
their key and cause, the one-line progress text, and the log-line progress reporter.

Counting happens in :mod:`.destination`; this module holds the figures and renders them.
It never prints: a progress display on a terminal is the scripts' (``scripts/progress.py``
draws :func:`render_progress` there).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    key: str
    op: str  # copy | verify | delete
    cause: str


@dataclass
class DestinationSummary:
    """What one run did to one destination.

    Each source key in scope is counted once in ``listed`` and once in ``copied``,
    ``skipped``, ``enqueued`` or ``failed``; ``extra`` counts destination-only keys, of
    which ``deleted`` were deleted (failed deletions also count in ``failed``). In a dry
    run, ``copied``, ``deleted`` and ``bytes_copied`` say what would have been done.
    ``error`` is set when the destination as a whole failed (unreachable, listing broken
    off, deletion refused).
    """

    name: str
    bucket: str
    listed: int = 0
    copied: int = 0
    skipped: int = 0
    enqueued: int = 0
    deleted: int = 0
    failed: int = 0
    extra: int = 0
    uploads_aborted: int = 0  # stale multipart uploads the run aborted
    # A versioned run (--versions): ``copied`` counts keys whose history was replayed;
    # these count what was written for them.
    versions_copied: int = 0
    markers_written: int = 0
    bytes_copied: int = 0
    duration_s: float = 0.0
    error: str | None = None
    delete_refused: bool = False
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.error is None

    def line(self, *, dry_run: bool = False) -> str:
        verb = "would be " if dry_run else ""
        text = (
            f"[{self.name}] s3://{self.bucket}: listed {self.listed}, {verb}copied "
            f"{self.copied}, skipped {self.skipped}, {verb}deleted {self.deleted}, failed "
            f"{self.failed}, {self.bytes_copied} bytes, {self.duration_s:.1f} s"
        )
        if self.versions_copied or self.markers_written:
            text += (
                f" ({verb}{self.versions_copied} versions and {self.markers_written} "
                "delete markers)"
            )
        if self.enqueued:
            text += f", enqueued {self.enqueued}"
        if self.extra:
            text += f" ({self.extra} keys only at the destination)"
        if self.uploads_aborted:
            text += f"; {self.uploads_aborted} stale multipart uploads aborted"
        return text


@dataclass
class JobSummary:
    """The outcome of one reconciliation: one :class:`DestinationSummary` per destination."""

    source: str
    bucket: str
    destinations: list[DestinationSummary]
    dry_run: bool = False
    enqueue: bool = False
    duration_s: float = 0.0
    stopped: bool = False  # stopped early (SIGTERM, lost lock): not everything was seen

    @property
    def ok(self) -> bool:
        return not self.stopped and all(d.ok for d in self.destinations)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.destinations)


def render_progress(summary: JobSummary, elapsed_s: float) -> str:
    """One line on a running job: what was listed, copied, skipped and failed, and the rate."""
    dests = summary.destinations
    listed = max((d.listed for d in dests), default=0)
    done = sum(d.copied + d.skipped + d.enqueued + d.failed for d in dests)
    copied = sum(d.copied for d in dests)
    megabytes = sum(d.bytes_copied for d in dests) / 1e6
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"listed {listed} | copied {copied} ({megabytes:.1f} MB) | skipped "
        f"{sum(d.skipped for d in dests)} | failed {sum(d.failed for d in dests)} | "
        f"{rate:.0f} keys/s | {elapsed_s:.0f} s"
    )


class ProgressLog:
    """Reports a running job in a log line every ``interval_s``, from a thread of its own.

    The runner calls :meth:`start` and :meth:`stop`; a subclass draws the line elsewhere by
    overriding :meth:`show` and :meth:`finish` (``scripts/progress.py``: a terminal).
    """

    def __init__(self, *, interval_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, summary: JobSummary, started: float) -> None:
        self._done.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(summary, started), name="progress", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def show(self, text: str) -> None:
        log.info("progress: %s", text)

    def finish(self, text: str) -> None:
        """The run is over; ``text`` is its last figures (the log has them in the summary)."""

    def _loop(self, summary: JobSummary, started: float) -> None:
        while not self._done.wait(self.interval_s):
            self.show(render_progress(summary, time.monotonic() - started))
        self.finish(render_progress(summary, time.monotonic() - started))
