"""The words the queue room shares with the rest of s3s3: the delivery :class:`Mode`, what an
intake needs of the replicator it feeds (:class:`Feed`) and what it is told when a job is
finished (:class:`Finished`).

An enum and typing protocols only: no I/O, no import of redis, so that the message parser
and anything else that imports this stays importable without redis. The listener satisfies
the protocols by shape; it never imports the queue room.
"""

from __future__ import annotations

import enum
import threading
from typing import Protocol

from s3s3.model import Outcome, WorkItem


class Mode(str, enum.Enum):
    """How work travels through Redis (``[pubsub] mode``).

    A ``str`` so that a setting holding the plain value (``"stream"``) and a member compare
    equal, and either reads as its value in logs.
    """

    PUBSUB = "pubsub"  # SUBSCRIBE to a channel: at-most-once, as in 2015
    STREAM = "stream"  # a Redis Stream read through a consumer group: at-least-once

    def __str__(self) -> str:
        return self.value


class Feed(Protocol):
    """What an intake calls on the replicator it hands work to."""

    def submit(self, item: WorkItem, ticket: object, *, prior_attempts: int = 0) -> None:
        """Take ``item``; ``ticket`` comes back in ``complete`` or ``hand_back``.

        ``prior_attempts`` counts attempts spent before this delivery (stream redeliveries).
        """

    def room(self) -> int:
        """How many more items it takes now."""
        ...

    def wait_for_room(self, timeout_s: float) -> bool:
        """Wait until ``room()`` is positive, at most ``timeout_s``."""
        ...

    def held(self) -> int:
        """How many tickets it holds, submitted and not yet reported."""
        ...


class Finished(Protocol):
    """What an intake is told of one finished job (the listener's job result)."""

    @property
    def key(self) -> str: ...

    @property
    def outcome(self) -> Outcome: ...

    @property
    def error(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...


class Push(Protocol):
    """A push intake (HTTP, AMQP) as ``s3s3intake`` runs it."""

    def describe(self) -> str:
        """Where it takes events from, for logs (no secret)."""
        ...

    def open(self) -> None:
        """Take what must be had before serving (a listening socket); raise
        :class:`OSError` or :class:`~s3s3.errors.ConfigError` when it cannot be had."""

    def serve(self, stop: threading.Event) -> None:
        """Take events until ``stop`` is set, then finish those being taken and return.

        Outages (Redis, the broker) are waited out here; raises only what retrying cannot
        fix (:class:`~s3s3.errors.RedisFatal`, :class:`~s3s3.errors.BrokerRefused`).
        """

    def problem(self) -> str | None:
        """Why it cannot take events now (Redis refusing entries), for readiness."""
        ...


class Counters(Protocol):
    """The listener's counters, which an intake adds to (bad messages, dead letters...)."""

    def add(self, **amounts: int) -> None: ...
