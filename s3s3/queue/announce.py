"""The step every push intake shares: a pushed body becomes stream entries, or a clear no.

An HTTP POST, an AMQP message and a Swift request each reach :class:`Announcer`, which parses
the body (:mod:`.messages`, so every format and hostile input is handled once), writes one
entry per record with :func:`~s3s3.queue.messages.entry_fields` through the producer, and
says what became of it. The intake acknowledges its sender only when :meth:`announce`
returned: the entries are in Redis by then. Nothing here speaks HTTP or AMQP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull, MessageError, QueueUnavailable, RedisFatal
from s3s3.model import WorkItem
from s3s3.queue.messages import Parsed, entry_fields, parse_message, preview
from s3s3.queue.outage import Outage
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused
from s3s3.queue.tally import Tally
from s3s3.redact import redact

log = logging.getLogger("s3s3.intake")

#: What a pushed body may be: event documents (an SNS envelope unwraps to one).
EVENT_FORMATS = frozenset({"s3-event", "minio-access", "test-event"})
#: What a write of entries may raise that :func:`sort_failure` sorts; anything else is a bug.
_FAILURES: tuple[type[BaseException], ...] = (*FATAL_ERRORS, *TRANSIENT_ERRORS, BacklogFull)


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
        self._outage = Outage()

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
        except _FAILURES as exc:
            error = sort_failure(self.cfg, exc)
            if isinstance(error, RedisFatal):
                raise error from None
            added = exc.added if isinstance(exc, BacklogFull) else 0
            self.tally.add("records", len(items) - added, outcome="unavailable", intake=self.via)
            if self._outage.failed(str(error)) == 1:
                log.warning(
                    "%s intake: %s; refusing pushes (the sender retries) until it can",
                    self.via,
                    error,
                )
            raise error from exc
        self.tally.add("records", len(items), outcome="queued", intake=self.via)
        ended = self._outage.recovered()
        if ended is not None and ended.failures:
            log.info(
                "%s intake: Redis at %s takes entries again, after %d refused pushes in %.1fs",
                self.via,
                self.cfg.safe_url,
                ended.failures,
                ended.lasted_s,
            )

    def problem(self) -> str | None:
        """Why Redis does not take this intake's entries now (None: it does)."""
        outage = self._outage.current()
        if outage is None:
            return None
        return (
            f"Redis at {self.cfg.safe_url} refused {outage.failures} pushes in the last "
            f"{outage.lasted_s:.0f}s"
        )


def sort_failure(
    cfg: RedisConfig, exc: BaseException, *, detail: bool = False
) -> RedisFatal | QueueUnavailable:
    """What a failed write of entries to ``cfg``'s Redis means, for every intake.

    :class:`~s3s3.errors.RedisFatal` when Redis refuses s3s3 (password, ACL: retrying cannot
    fix it; checked first, since redis-py's refusals are connection errors too),
    :class:`QueueUnavailable` when the stream is full (:class:`BacklogFull`) or Redis is
    away or answers otherwise. The message of an unavailable Redis names the error's type,
    not its text, since it is answered to senders; with ``detail`` (for a log line that
    names the URL itself) it is the type and the redacted text instead.
    """
    if isinstance(exc, FATAL_ERRORS):
        return refused(cfg.safe_url, exc)
    if isinstance(exc, BacklogFull):
        return QueueUnavailable(redact(str(exc), cfg.secrets()))
    if detail:
        return QueueUnavailable(f"{type(exc).__name__}: {redact(str(exc), cfg.secrets())}")
    return QueueUnavailable(f"Redis at {cfg.safe_url} cannot take entries: {type(exc).__name__}")


__all__ = ["Announced", "Announcer", "sort_failure"]
