"""The PUBLISH bridge: producers that only know PUBLISH can feed the reliable mode.

``s3s3publish --bridge`` subscribes to the pub/sub channel and XADDs every message, raw,
into the stream as a ``message`` field; listeners in stream mode parse it like any other
message. The bridge is the only at-most-once hop left: what is published while the bridge
itself is not subscribed is lost, so run it under a supervisor, and prefer producers that
XADD (``s3s3publish`` in stream mode, or :func:`~s3s3.queue.producer.add_entries`).
Two bridges on one channel add every message twice: harmless (the second copy finds the
destination identical) but wasteful. The bridge parses nothing (it only drops a message over
the size limit, which the listener would reject) and copies no object.
"""

from __future__ import annotations

import logging
import threading

import redis

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull
from s3s3.queue.link import RedisLink
from s3s3.queue.messages import MAX_MESSAGE_BYTES, preview
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused

log = logging.getLogger("s3s3.bridge")

BRIDGE_BATCH = 500


def run_bridge(
    redis_client: redis.Redis,
    cfg: RedisConfig,
    *,
    stop: threading.Event,
    link: RedisLink | None = None,
    counts: dict | None = None,
) -> None:
    """Bridge ``cfg.channel`` into ``cfg.stream`` until ``stop`` is set.

    Reconnects forever (each outage logged once); raises :class:`RedisFatal` on bad
    credentials. ``counts``, when given, receives ``bridged`` and ``dropped`` totals.
    """
    link = link or RedisLink(cfg.safe_url)
    counts = counts if counts is not None else {}
    counts.setdefault("bridged", 0)
    counts.setdefault("dropped", 0)
    pending: list[bytes] = []
    while not stop.is_set():
        pubsub = redis_client.pubsub(ignore_subscribe_messages=False)
        try:
            pubsub.subscribe(cfg.channel)
            confirmed = False
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.5 if not pending else 0.0)
                if message is None:
                    if pending:
                        _flush(redis_client, cfg, pending, counts, stop)
                    continue
                kind = message.get("type")
                if kind == "subscribe" and not confirmed:
                    confirmed = True
                    link.up()
                    log.info("bridging channel %r into %s", cfg.channel, cfg.stream)
                elif kind == "message":
                    data = message["data"]
                    if len(data) > MAX_MESSAGE_BYTES:
                        counts["dropped"] += 1
                        log.warning(
                            "dropped a message of %d bytes (over %d): %s",
                            len(data),
                            MAX_MESSAGE_BYTES,
                            preview(data),
                        )
                        continue
                    pending.append(data)
                    if len(pending) >= BRIDGE_BATCH:
                        _flush(redis_client, cfg, pending, counts, stop)
            if pending:
                _flush(redis_client, cfg, pending, counts, stop)
        except FATAL_ERRORS as exc:
            raise refused(cfg.safe_url, exc) from exc
        except TRANSIENT_ERRORS as exc:
            # Messages already read stay in ``pending`` and are added after reconnecting.
            link.down(exc, stop)
        finally:
            try:
                pubsub.close()
            except (redis.exceptions.RedisError, OSError):
                pass


def _flush(
    client: redis.Redis, cfg: RedisConfig, pending: list[bytes], counts: dict, stop: threading.Event
) -> None:
    while True:
        try:
            counts["bridged"] += add_entries(
                client, cfg, ({"message": m} for m in pending), wait_s=5.0
            )
            pending.clear()
            return
        except BacklogFull as exc:
            del pending[: exc.added]
            log.warning(
                "%s; holding %d messages (pub/sub keeps nothing, so the bridge must)",
                exc,
                len(pending),
            )
            if stop.is_set():
                return
