"""The progress display of ``s3s3bucket``: one line redrawn on a terminal, log lines otherwise.

The bucket job reports through a :class:`~s3s3.bucketjob.summary.ProgressLog` (log lines);
this is where a line is drawn on a stream instead, since only the scripts write to one.
"""

from __future__ import annotations

from typing import TextIO

from s3s3.bucketjob.summary import ProgressLog

#: How often the terminal line is redrawn.
REDRAW_S = 0.5


class TerminalProgress(ProgressLog):
    """Redraws one line on ``stream`` (a terminal) every ``interval_s``, and ends it."""

    def __init__(self, stream: TextIO, *, interval_s: float = REDRAW_S) -> None:
        super().__init__(interval_s=interval_s)
        self.stream = stream

    def show(self, text: str) -> None:
        self.stream.write("\r" + text[:200].ljust(79))
        self.stream.flush()

    def finish(self, text: str) -> None:
        self.show(text)
        self.stream.write("\n")
        self.stream.flush()


def for_stream(stream: TextIO, *, interval_s: float) -> ProgressLog:
    """A line redrawn twice a second when ``stream`` is a terminal, else log lines every
    ``interval_s``."""
    if hasattr(stream, "isatty") and stream.isatty():
        return TerminalProgress(stream)
    return ProgressLog(interval_s=interval_s)
