"""What the replicator tells whoever watches it (the metrics room, a test): one call per
destination's copy or delete, per failed try, and per finished job.

A typing protocol and a watcher that does nothing. The listener never imports a metrics
library: ``s3s3listen`` passes in an object of this shape (``s3s3.metrics.ListenerMetrics``),
and the gauges (jobs held, endpoints down) are read from :meth:`Replicator.state` when they
are scraped, not pushed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from s3s3.model import CopyResult

if TYPE_CHECKING:
    from s3s3.listener.replicator import JobResult


class Observer(Protocol):
    """Hooks the replicator calls from its worker threads; each must be quick and must not
    raise."""

    def copied(self, destination: str, result: CopyResult) -> None:
        """One destination has the key as the source has it (copied, or found identical)."""

    def deleted(self, destination: str) -> None:
        """One destination's copy of the key was deleted."""

    def failed(self, destination: str, exc: BaseException) -> None:
        """One try against ``destination`` (or the source, named so) failed with ``exc``."""

    def finished(self, result: JobResult, event_times: Sequence[float]) -> None:
        """A job is done; ``event_times`` are the times (seconds since the epoch) of the
        events it served that carried one."""


class NoObserver:
    """The observer of a replicator nobody watches."""

    def copied(self, destination: str, result: CopyResult) -> None:
        pass

    def deleted(self, destination: str) -> None:
        pass

    def failed(self, destination: str, exc: BaseException) -> None:
        pass

    def finished(self, result: JobResult, event_times: Sequence[float]) -> None:
        pass


__all__ = ["NoObserver", "Observer"]
