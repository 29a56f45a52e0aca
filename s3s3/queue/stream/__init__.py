"""Reliable mode: a Redis Stream read through a consumer group, at least once.

- :mod:`.consumer` — :class:`StreamSource`, this process as one consumer of the group;
- :mod:`.dead_letters` — entries given up on, and their admin (list, requeue, purge);
- :mod:`.upkeep` — creating the group, trimming acknowledged entries, forgetting consumers
  long gone;
- :mod:`.entries` — ids and fields of an entry, as the modules above read them;
- :mod:`.sharded` — :class:`ShardedSource`, one consumer per stream when the work is spread
  over several (``[pubsub] shards``, named by :mod:`s3s3.queue.shards`);
- :mod:`.status` — what the stream holds and who works on it (``s3s3listen status``, the
  backlog gauges).

Entries are written by :mod:`s3s3.queue.producer` (``add_entries``: ``key`` + ``op``) or
carry a raw ``message`` (S3 event, MinIO access list, plain key) put there by the PUBLISH
bridge or the MinIO list mover. An entry is acknowledged (XACK) only after the work it asked
for is verified at every destination.

How nothing is lost:

- each ``s3s3listen`` is one consumer of the group; XREADGROUP hands every entry to exactly
  one of them, and it stays in that consumer's pending list until acknowledged;
- on start a consumer first re-reads its own pending entries (id ``0``), then new ones (``>``);
- entries a dead consumer left idle longer than ``reclaim_idle`` are taken over (XPENDING
  with IDLE, then XCLAIM, which re-checks the idle time atomically);
  a live consumer renews the entries it holds (XCLAIM ... JUSTID), so a slow copy or a
  destination that is down for hours is not mistaken for a dead consumer;
- an entry delivered more than ``max_deliveries`` times, or failed that many times, goes to
  the dead-letter stream with the reason and the error, then is acknowledged;
  :func:`requeue_dead_letters` puts dead letters back;
- on shutdown, entries that could not be finished within the grace period are handed back:
  re-added to the stream (with their attempt count) and acknowledged in one MULTI/EXEC.

How the stream stays bounded without dropping unacknowledged entries: XADD never trims
(no ``MAXLEN``). Instead listeners periodically trim (``XTRIM MINID ~``) below the oldest
entry some group still needs — its oldest pending entry, or the first one it has not been
given yet — so the stream holds little more than the backlog. Publishers
(:func:`~s3s3.queue.producer.add_entries`) apply back-pressure: while the stream holds
``maxlen`` entries or more they wait, and raise :class:`~s3s3.errors.BacklogFull` if no room
appears within ``wait_s``. The dead-letter stream, which no group reads, is capped with
``MAXLEN ~ maxlen``: past that, the oldest dead letters are dropped.

Every key shares the ``{channel}`` hash tag, so a Redis Cluster keeps them in one slot and
the MULTI/EXEC batches are legal there. With sharded streams each shard's stream and dead
letters share a tag of their own (``{channel-I}``), and everything above holds per shard.

The names below are the stream's public surface (``s3s3listen dead-letters`` and the README
use ``s3s3.queue.stream.requeue_dead_letters``); each lives in the module named above. The
stream never copies objects.
"""

from s3s3.queue.stream.consumer import StreamSource
from s3s3.queue.stream.dead_letters import (
    DEAD_FIELDS,
    DeadLetter,
    dead_letter_counts,
    dead_letter_fields,
    list_dead_letters,
    purge_dead_letters,
    requeue_dead_letters,
)
from s3s3.queue.stream.entries import ATTEMPTS_FIELD
from s3s3.queue.stream.sharded import ShardedSource
from s3s3.queue.stream.status import ConsumerStatus, StreamStatus, read_status
from s3s3.queue.stream.upkeep import (
    GroupUpkeep,
    ensure_group,
    remove_idle_consumers,
    safe_trim_id,
    trim_acknowledged,
)

__all__ = [
    "ATTEMPTS_FIELD",
    "ConsumerStatus",
    "DEAD_FIELDS",
    "DeadLetter",
    "GroupUpkeep",
    "ShardedSource",
    "StreamSource",
    "StreamStatus",
    "dead_letter_counts",
    "dead_letter_fields",
    "ensure_group",
    "list_dead_letters",
    "purge_dead_letters",
    "read_status",
    "remove_idle_consumers",
    "requeue_dead_letters",
    "safe_trim_id",
    "trim_acknowledged",
]
