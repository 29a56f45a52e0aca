"""The step every push intake shares: a pushed body becomes stream entries, or a clear no.

An HTTP POST, an AMQP message and a Swift request each reach :class:`Announcer`, which parses
the body (:mod:`.messages`, so every format and hostile input is handled once), writes one
entry per record with :func:`~s3s3.queue.messages.entry_fields` through the producer, and
says what became of it. The intake acknowledges its sender only when :meth:`announce`
returned: the entries are in Redis by then. Nothing here speaks HTTP or AMQP.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull, MessageError, QueueUnavailable
from s3s3.model import WorkItem
from s3s3.queue.messages import Parsed, entry_fields, parse_message, preview
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused
from s3s3.queue.tally import Tally

log = logging.getLogger("s3s3.intake")

#: What a pushed body may be: event documents (an SNS envelope unwraps to one).
EVENT_FORMATS = frozenset({"s3-event", "minio-access", "test-event"})


@dataclass(frozen=True)
class Announced:
    """What one body became: entries queued, and records understood but skipped."""

    queued: int
    skipped: int
    parsed: Parsed


class Announcer:
    """Parses pushed bodies and adds their records to ``cfg.stream``.

    ``via`` names the intake in every entry (``http``, ``amqp``, ``swift``). ``wait_s`` is
    how long a full stream may hold up one body before :class:`QueueUnavailable`: short,
    since the sender is waiting and will retry.
    """

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        via: str,
        tally: Tally,
        source_bucket: str | None = None,
        key_encoding: str = "auto",
        wait_s: float = 1.0,
    ) -> None:
        self.client = client
        self.cfg = cfg
        self.via = via
        self.tally = tally
        self.source_bucket = source_bucket
        self.key_encoding = key_encoding
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._outage: tuple[float, int] | None = None  # (since, refusals) while Redis fails

    def parse(self, body: bytes) -> Parsed:
        """The records of ``body``; raises :class:`~s3s3.errors.MessageError` saying what is
        wrong with it.

        Only event documents are taken: the parser reads any other text as a 2015 key
        message, but a pushed body that is no event is a sender's mistake, not a key.
        """
        parsed = parse_message(
            body, source_bucket=self.source_bucket, key_encoding=self.key_encoding
        )
        if parsed.format not in EVENT_FORMATS:
            raise MessageError(
                "body is not an S3 event document (JSON with 'Records', a MinIO access "
                f"list or an SNS envelope); starts {preview(body)}"
            )
        return parsed

    def announce(self, parsed: Parsed) -> Announced:
        """Add the items of ``parsed`` to the stream; raises :class:`QueueUnavailable` when
        Redis cannot take them now, :class:`~s3s3.errors.RedisFatal` when it refuses s3s3.

        Entries of a body that failed half-way may be in the stream: the sender's retry adds
        them again, which the listener's stale-event check absorbs.
        """
        for skip in parsed.skipped:
            self.tally.add("records", outcome="skipped", intake=self.via)
            log.info(
                "%s intake: skipped key=%r bucket=%r: %s",
                self.via,
                skip.key,
                skip.bucket,
                skip.reason,
            )
        if parsed.items:
            self.add(parsed.items)
        return Announced(len(parsed.items), len(parsed.skipped), parsed)

    def add(self, items: tuple[WorkItem, ...] | list[WorkItem]) -> None:
        """XADD one entry per item, or raise as :meth:`announce` says."""
        entries = [entry_fields(item, via=self.via) for item in items]
        try:
            add_entries(self.client, self.cfg, entries, wait_s=self.wait_s)
        except FATAL_ERRORS as exc:
            raise refused(self.cfg.safe_url, exc) from None
        except BacklogFull as exc:
            self.tally.add(
                "records", len(items) - exc.added, outcome="unavailable", intake=self.via
            )
            raise self._unavailable(QueueUnavailable(str(exc))) from exc
        except TRANSIENT_ERRORS as exc:
            self.tally.add("records", len(items), outcome="unavailable", intake=self.via)
            raise self._unavailable(
                QueueUnavailable(
                    f"Redis at {self.cfg.safe_url} cannot take entries: {type(exc).__name__}"
                )
            ) from exc
        self.tally.add("records", len(items), outcome="queued", intake=self.via)
        if self._outage is not None:
            self._recovered()

    def problem(self) -> str | None:
        """Why Redis does not take this intake's entries now (None: it does)."""
        with self._lock:
            outage = self._outage
        if outage is None:
            return None
        return (
            f"Redis at {self.cfg.safe_url} refused {outage[1]} pushes in the last "
            f"{time.monotonic() - outage[0]:.0f}s"
        )

    def _unavailable(self, exc: QueueUnavailable) -> QueueUnavailable:
        """Log the first refusal of an outage (later ones are only counted)."""
        with self._lock:
            first = self._outage is None
            since, refusals = self._outage or (time.monotonic(), 0)
            self._outage = (since, refusals + 1)
        if first:
            log.warning(
                "%s intake: %s; refusing pushes (the sender retries) until it can", self.via, exc
            )
        return exc

    def _recovered(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            log.info(
                "%s intake: Redis at %s takes entries again, after %d refused pushes in %.1fs",
                self.via,
                self.cfg.safe_url,
                outage[1],
                time.monotonic() - outage[0],
            )


__all__ = ["Announced", "Announcer"]
