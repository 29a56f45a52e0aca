"""Where the listener's work comes from, and how keys are announced.

- :mod:`.messages` — pure parsing of one message (plain key, S3 event, MinIO access list)
  into work items; imports no redis;
- :mod:`.contract` — the delivery :class:`~.contract.Mode` and what an intake needs of the
  replicator it feeds (typing only; imports no redis);
- :mod:`.pubsub` — compatible mode: SUBSCRIBE to the channel (at-most-once);
- :mod:`.stream` — reliable mode: a Redis Stream and a consumer group (at-least-once):
  the consumer, dead letters, group upkeep;
- :mod:`.producer` — announcing keys: :func:`~.producer.publish_keys`,
  :func:`~.producer.add_entries`;
- :mod:`.minio_list` — moving a MinIO Redis list into the stream;
- :mod:`.bridge` — moving PUBLISHed messages into the stream;
- :mod:`.link` — reconnecting, state-change logging and batched writes, shared by the above;
- :mod:`.redis_client` — making a Redis client from ``[pubsub]``, and the one table of
  which Redis errors are transient and which fatal.

Sources never copy objects; the replicator never parses messages. A source hands the
replicator work items with an opaque ticket each, and is told when a ticket's work is done
(``complete``) or was left unfinished at shutdown (``hand_back``). Importing this package
imports nothing else, so :mod:`.messages` stays importable without redis installed.
"""
