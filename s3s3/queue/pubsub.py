"""Compatible mode: SUBSCRIBE to the pub/sub channel, as the 2015 listener did.

Every message is one work message (a plain key name, as ``redis-cli PUBLISH backup
some/key`` sends it, or an S3 event). Redis pub/sub is at-most-once: a message published
while no listener is subscribed — the daemon stopped, restarting, or cut off from Redis —
is gone, and nothing can bring it back. The reliable mode (``mode = stream``) does not have
this gap; the PUBLISH bridge (``s3s3publish --bridge``) feeds it from PUBLISH-only
producers.

Intake cannot pause here (Redis buffers for a slow subscriber only up to its
``client-output-buffer-limit`` and then disconnects it), so messages are always read; work
beyond ``max_held`` distinct items is dropped with an error rather than letting memory grow
without bound while a destination is down.

This module also PUBLISHes (:func:`publish_messages`, for the producer). It parses messages
with :mod:`s3s3.queue.messages` and never copies objects: the replicator does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

import redis
import redis.exceptions

from s3s3.config import RedisConfig
from s3s3.errors import MessageError
from s3s3.model import WorkItem
from s3s3.queue.contract import Counters, Feed, Finished, Mode
from s3s3.queue.link import RedisLink, RedisLoop, Writer, queue_marker
from s3s3.queue.messages import parse_message, preview, unparsable
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused

log = logging.getLogger("s3s3.listen")

MAX_HELD = 100_000
PUBLISH_BATCH = 500


def publish_messages(
    redis_client: redis.Redis, cfg: RedisConfig, messages: Iterable[bytes]
) -> tuple[int, int]:
    """PUBLISH ``messages`` on ``cfg.channel`` in pipelined batches.

    Returns ``(published, received)``: ``received`` sums the subscribers each message
    reached, so 0 means no listener heard anything (pub/sub keeps nothing).
    """
    published = received = 0
    batch: list[bytes] = []

    def flush() -> None:
        nonlocal published, received
        pipe = redis_client.pipeline(transaction=False)
        for message in batch:
            # Not pipe.publish: redis-py's cluster pipeline refuses it by name, and routes
            # the command by the channel's slot, where its pubsub() subscribes too.
            pipe.execute_command("PUBLISH", cfg.channel, message)
        received += sum(int(n) for n in pipe.execute())
        published += len(batch)
        batch.clear()

    for message in messages:
        batch.append(message)
        if len(batch) >= PUBLISH_BATCH:
            flush()
    if batch:
        flush()
    return published, received


class PubSubSource(RedisLoop):
    """Compatible intake: one subscription to the channel; nothing to acknowledge."""

    mode = Mode.PUBSUB

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        link: RedisLink,
        counters: Counters,
        source_bucket: str | None = None,
        key_encoding: str = "auto",
        max_held: int = MAX_HELD,
    ) -> None:
        super().__init__(client, cfg, link=link)
        self.counters = counters
        self.source_bucket = source_bucket
        self.key_encoding = key_encoding
        self.max_held = max_held
        self.writer = Writer(client, link)
        self._dropping = False
        self._listening = False

    def describe(self) -> str:
        return f"pub/sub channel {self.cfg.channel!r}"

    def start(self) -> None:
        self.writer.start()

    def run(self, replicator: Feed, stop: threading.Event) -> None:
        """Subscribe and hand every message to ``replicator`` until ``stop`` is set."""
        while not stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.cfg.channel)
                self._confirm(pubsub, stop)
                self.link.up()
                if not self._listening:
                    self._listening = True
                    log.info(
                        "listening on pub/sub channel %r (at-most-once: what is published "
                        "while no listener is subscribed is lost)",
                        self.cfg.channel,
                    )
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self.handle(message["data"], replicator)
            except FATAL_ERRORS as exc:
                self._fail(refused(self.cfg.safe_url, exc), stop)
            except TRANSIENT_ERRORS as exc:
                self.link.down(exc, stop)
            finally:
                try:
                    pubsub.close()
                except (redis.exceptions.RedisError, OSError):
                    pass

    @staticmethod
    def _confirm(pubsub: redis.client.PubSub, stop: threading.Event) -> None:
        """Wait for Redis to confirm the subscription, so "subscribed" in the log is true."""
        while not stop.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                return

    def handle(self, data: bytes, replicator: Feed) -> None:
        """Parse one message and submit its work items."""
        try:
            parsed = parse_message(
                data, source_bucket=self.source_bucket, key_encoding=self.key_encoding
            )
        except MessageError as exc:
            self.counters.add(bad_messages=1)
            log.warning("bad message on channel %r: %s", self.cfg.channel, exc)
            return
        except Exception as exc:  # a parser bug: this message is bad, the intake goes on
            self.counters.add(bad_messages=1)
            log.warning(
                "bad message on channel %r: %s",
                self.cfg.channel,
                unparsable(exc, data),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return
        for skipped in parsed.skipped:
            self.counters.add(ignored_events=1)
            log.info("skipped %s record for key %r: %s", parsed.format, skipped.key, skipped.reason)
        for item in parsed.items:
            if replicator.held() >= self.max_held:
                self.counters.add(dropped=1)
                if not self._dropping:
                    self._dropping = True
                    log.error(
                        "more than %d keys waiting (a destination down?): dropping new "
                        "messages, starting with %s; the bucket job will catch up. The "
                        "stream mode holds a backlog in Redis instead",
                        self.max_held,
                        preview(data),
                    )
                continue
            self._dropping = False
            replicator.submit(item, item)

    def complete(self, tickets: Sequence[WorkItem], result: Finished) -> None:
        """Called by a worker when a job is finished: nothing to acknowledge, only markers."""
        if self.cfg.marker_keys:
            queue_marker(self.writer, self.cfg, result)

    def hand_back(self, tickets: Sequence[WorkItem]) -> int:
        """Pub/sub cannot take work back: say which keys were announced and not replicated."""
        keys = sorted({t.key for t in tickets})
        if keys:
            self.counters.add(dropped=len(keys))
            shown = ", ".join(repr(k) for k in keys[:10]) + (" ..." if len(keys) > 10 else "")
            log.error(
                "%d announced keys were not replicated before shutdown and are lost to "
                "pub/sub (the bucket job will copy them): %s",
                len(keys),
                shown,
            )
        return len(keys)

    def close(self, timeout_s: float) -> None:
        self.writer.close(timeout_s)
