"""The range stream's consumer: this listener as one worker of a ranged reconcile.

:class:`RangeSource` is a :class:`~.consumer.StreamSource` on the range stream
(:func:`s3s3.queue.runs.range_stream`), with everything that gives (own pending entries
first, reclaim from dead listeners after ``reclaim_idle``, renewal of held entries, dead
letters after ``max_deliveries``, hand-back at shutdown). Its feed is the listener's range
worker, whose ``room()`` is its free range slots: a listener reads a range only when it can
start it, so the ranges of a run spread over the fleet.

What it adds is the run record (:mod:`s3s3.queue.runs`): a range is acknowledged in the
same MULTI/EXEC that writes its summary (``done:<index>``), and a range dead-lettered is
written down as ``dead:<index>`` in the same MULTI/EXEC as its dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from redis.client import Pipeline

from s3s3.config import RedisConfig
from s3s3.errors import MessageError
from s3s3.model import Outcome
from s3s3.queue.contract import Finished
from s3s3.queue.messages import Parsed, parse_range_fields
from s3s3.queue.runs import range_config, record_dead, record_done
from s3s3.queue.stream.consumer import StreamSource, _Entry
from s3s3.queue.stream.dead_letters import dead_letter_fields
from s3s3.queue.stream.entries import text

log = logging.getLogger("s3s3.listen")


class RangeFinished(Finished, Protocol):
    """What the range worker reports of one range (the listener's ``RangeResult``)."""

    @property
    def run_id(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def summary(self) -> Mapping[str, Any]: ...


class RangeSource(StreamSource):
    """The consumer of the range stream; built as a StreamSource is, on the work stream's
    settings (the range stream's name is derived from them)."""

    def __init__(self, client: Any, cfg: RedisConfig, **kwargs: Any) -> None:
        self.work_cfg = cfg
        super().__init__(client, range_config(cfg), **kwargs)

    def describe(self) -> str:
        return f"range stream {self.cfg.stream} (group {self.cfg.group!r})"

    def _accept_ranges(self, entry_id: bytes, fields: dict, parsed: Parsed, prior: int) -> None:
        entry = _Entry(entry_id, fields, len(parsed.ranges), prior)
        with self._lock:
            self._held[entry_id] = entry
        feed = self._replicator
        assert feed is not None, "run() gives the feed before any read"
        for work in parsed.ranges:
            feed.submit(work, entry, prior_attempts=prior)  # type: ignore[arg-type]

    def complete(self, tickets: Sequence[Any], result: RangeFinished) -> None:  # type: ignore[override]
        """Acknowledge a range and write its summary in one MULTI/EXEC, or dead-letter it
        (and say so in the run record)."""
        finished = []
        with self._lock:
            for entry in tickets:
                if self._held.pop(entry.id, None) is not None:
                    finished.append(entry)
        if result.outcome == Outcome.FAILED:
            for entry in finished:
                self._dead_letter(
                    entry.id,
                    entry.fields,
                    reason=result.reason or "failed",
                    error=result.error or "failed",
                )
            return
        summary = dict(result.summary)
        run_id, index = result.run_id, result.index
        cfg, run_cfg = self.cfg, self.work_cfg
        for entry in finished:
            entry_id = entry.id

            def write(pipe: Pipeline, entry_id: bytes = entry_id) -> None:
                record_done(pipe, run_cfg, run_id, index, summary)
                pipe.xack(cfg.stream, cfg.group, entry_id)

            self.writer.add(write, transaction=True)
            log.info("range %d of run %s done (entry %s)", index, run_id, text(entry_id))

    def _dead_letter(self, entry_id: bytes, fields: Mapping, *, reason: str, error: str) -> None:
        letter = dead_letter_fields(
            fields, entry_id=entry_id, reason=reason, error=error, consumer=self.cfg.consumer
        )
        try:
            work = parse_range_fields(fields)
        except MessageError:
            work = None  # a bad entry names no range of a run that could be told
        cfg, run_cfg = self.cfg, self.work_cfg

        def write(pipe: Pipeline) -> None:
            pipe.xadd(cfg.dead_letter_stream, letter, maxlen=cfg.maxlen, approximate=True)
            if work is not None:
                record_dead(pipe, run_cfg, work.run_id, work.index, reason=reason, error=error)
            pipe.xack(cfg.stream, cfg.group, entry_id)

        self.writer.add(write, transaction=True)
        self.counters.add(dead_lettered=1)
        log.error("dead-lettered range entry %s (%s): %s", text(entry_id), reason, error)


__all__ = ["RangeFinished", "RangeSource"]
