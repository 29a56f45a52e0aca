"""The listener: turning announced work into verified copies, one key at a time.

- :mod:`.ordering` — per-key ordering and coalescing (:class:`~.ordering.Job`,
  :class:`~.ordering.KeyOrder`);
- :mod:`.health` — endpoint health, the circuit breaker that holds work for an endpoint
  that is down;
- :mod:`.replicator` — the :class:`~.replicator.Replicator`: a bounded pool of workers, the
  copier it is given, whole-job retries through :mod:`s3s3.retry`;
- :mod:`.daemon` — the :class:`~.daemon.Listener` lifecycle: start, run, drain, hand back;
- :mod:`.counters`, :mod:`.timer`, :mod:`.threads` — its totals, its timer, how its threads
  die.

The listener takes work items with opaque tickets from an intake it is given (the
``s3s3.queue.intake`` factory, passed in by the console script) and tells it of every
finished job. It never imports redis, never parses a message, never installs a signal
handler and never chooses an exit code.
"""
