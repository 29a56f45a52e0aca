"""Moving a Redis list (MinIO's Redis target, ``format=access``) into the stream, losing nothing.

MinIO RPUSHes one JSON entry per event onto a list. Each entry is moved with BLMOVE onto a
processing list (in the same hash slot), XADDed to the stream as a ``message`` field, and
only then LREMed from the processing list. A process that dies between the steps leaves the
entry on the processing list; the next mover to start adds whatever it finds there to the
stream first. The worst case is an entry added twice, which the listener tolerates (the
second copy finds the destination already identical, or copies again).

Entries are moved raw; the listener parses them like any other message, so a malformed
entry is reported and dead-lettered there, with its text intact. The mover parses nothing
and copies no object.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
import redis.exceptions

from s3s3.config import RedisConfig
from s3s3.errors import BacklogFull, RedisFatal
from s3s3.queue.link import RedisLink, RedisLoop
from s3s3.queue.producer import add_entries
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused

log = logging.getLogger("s3s3.listen")

MOVE_BATCH = 100


def processing_key(list_key: str) -> str:
    """The list that holds MinIO entries between BLMOVE and XADD, in the list's hash slot
        (on a Redis Cluster BLMOVE must not cross slots): a key with a hash tag lends its tag,
        any other key becomes the tag. (A key whose first tag is empty, ``{}x``, is hashed whole
    and no name could share its slot: the configuration refuses it.)"""
    if "{" in list_key and list_key.split("{", 1)[1].find("}") > 0:
        return f"{list_key}:s3s3-processing"
    return "{" + list_key + "}:s3s3-processing"


class ListMover(RedisLoop):
    """Drains ``cfg.list_key`` into ``cfg.stream``; run it in a thread of its own."""

    def __init__(
        self,
        client: redis.Redis,
        cfg: RedisConfig,
        *,
        link: RedisLink,
        batch: int = MOVE_BATCH,
        block_s: float = 0.5,
    ) -> None:
        if not cfg.list_key:
            raise ValueError("ListMover needs a list key ([pubsub] list)")
        super().__init__(client, cfg, link=link)
        self.batch = batch
        self.block_s = block_s
        self.list_key = cfg.list_key
        self.processing = processing_key(cfg.list_key)

    def run(self, stop: threading.Event) -> None:
        recovered = False
        while not stop.is_set():
            try:
                if not recovered:
                    self._recover(stop)
                    recovered = True
                    log.info("moving entries from list %r into %s", self.list_key, self.cfg.stream)
                self.link.up()
                while not stop.is_set():
                    self._move_some(stop)
            except FATAL_ERRORS as exc:
                self._fail(refused(self.cfg.safe_url, exc), stop)
            except TRANSIENT_ERRORS as exc:
                self.link.down(exc, stop)
            except redis.exceptions.ResponseError as exc:
                # WRONGTYPE (the list key holds something else), a command the server lacks:
                # retrying cannot fix it. It used to end this thread and nothing else.
                self._fail(
                    RedisFatal(f"Redis rejected a command on list {self.list_key!r}: {exc}"), stop
                )

    def _recover(self, stop: threading.Event) -> None:
        """Add to the stream what a mover that died left on the processing list."""
        left = self.client.lrange(self.processing, 0, -1)
        if left:
            log.warning(
                "found %d entries on %s left by a mover that stopped mid-way; adding "
                "them to the stream (some may be duplicates)",
                len(left),
                self.processing,
            )
            self._add_then_remove(left, stop)

    def _move_some(self, stop: threading.Event) -> None:
        first = self.client.blmove(
            self.list_key,
            self.processing,
            self.block_s,  # type: ignore[arg-type]  # BLMOVE takes a decimal timeout (Redis 6)
            "LEFT",
            "RIGHT",
        )
        if first is None:
            return
        items = [first]
        if self.batch > 1:
            pipe = self.client.pipeline(transaction=False)
            for _ in range(self.batch - 1):
                pipe.lmove(self.list_key, self.processing, "LEFT", "RIGHT")
            items.extend(i for i in pipe.execute() if i is not None)
        self._add_then_remove(items, stop)

    def _add_then_remove(self, items: list[Any], stop: threading.Event) -> None:
        """XADD ``items`` (list entries, as redis-py returns them), then LREM them from the
        processing list."""
        warned = False
        todo = list(items)
        while True:
            try:
                add_entries(self.client, self.cfg, ({"message": i} for i in todo), wait_s=5.0)
                break
            except BacklogFull as exc:
                del todo[: exc.added]
                # The entries wait on the processing list; MinIO's list holds the rest.
                if not warned:
                    log.warning("%s; list entries wait in Redis meanwhile", exc)
                    warned = True
                if stop.is_set():
                    return
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.lrem(self.processing, 1, item)
        pipe.execute()
