"""The daemon's side of Redis: reconnecting forever, logging each state change once, and
applying acknowledgements and other small writes in batches from one thread.

Redis errors are sorted by the one table in :mod:`s3s3.queue.redis_client`: lost
connections and timeouts are retried after the backoff of :mod:`s3s3.retry` (no limit on
attempts) for as long as it takes; bad credentials and missing permissions are fatal
(:class:`RedisFatal`), because retrying cannot fix them. Here is how Redis is reached, not
what is read from it: nothing in this module parses a message or copies an object.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

from s3s3.config import RedisConfig
from s3s3.model import Outcome
from s3s3.queue.contract import Finished
from s3s3.queue.outage import Outage
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, connect
from s3s3.redact import redact, redact_url
from s3s3.retry import Policy

log = logging.getLogger("s3s3.listen")


class RedisLoop:
    """What a loop over Redis in a thread of its own holds (the intakes, the list mover),
    and how it gives up on a fatal error."""

    def __init__(self, client: redis.Redis, cfg: RedisConfig, *, link: RedisLink) -> None:
        self.client = client
        self.cfg = cfg
        self.link = link
        self.fatal: BaseException | None = None

    def _fail(self, exc: BaseException, stop: threading.Event) -> None:
        """Log ``exc`` and stop; it is kept in ``fatal`` first, so whoever wakes on
        ``stop`` finds it."""
        log.error("%s", exc)
        self.fatal = exc
        stop.set()


def daemon_client(cfg: RedisConfig, *, socket_timeout_s: float = 15.0) -> redis.Redis:
    """A client for long-running loops: short socket timeouts, one quiet retry.

    redis-py's own retries (three, backing off up to 10 s) would hide outages from the
    reconnect loop and make shutdown slow; one retry is kept so a pooled connection that
    went stale across a Redis restart is replaced without fuss.
    """
    return connect(cfg, socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 1))


class RedisLink:
    """The state of one server (Redis, unless ``what`` names another) as seen by all the
    threads of one process.

    ``down()`` logs the first failure after a success and then waits (``policy``'s
    backoff, never giving up); ``up()`` logs the recovery once. A thousand failed retries
    make two log lines. :meth:`failed` is ``down()`` without the wait, for a caller that
    waits its own way (the AMQP intake keeps its broker connection serviced meanwhile).
    ``log`` and ``prefix`` are where the lines go and how they start; ``secrets`` are masked
    in the errors they quote.
    """

    def __init__(
        self,
        safe_url: str,
        *,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        what: str = "Redis",
        log: logging.Logger = log,
        prefix: str = "",
        secrets: Iterable[str] = (),
    ) -> None:
        self.safe_url = safe_url
        self.policy = Policy(attempts=None, base_s=retry_base_s, max_s=retry_max_s)
        self.what = what
        self.log = log
        self.prefix = prefix
        self.secrets = tuple(secrets)
        self._outage = Outage()

    def state(self) -> tuple[bool, str]:
        """Whether the server answered the last try, and if not, what the failure was and for
        how long (readiness and the ``s3s3_redis_up`` gauge read this; it makes no request)."""
        outage = self._outage.current()
        if outage is None and self._outage.ever_up:
            return True, ""
        if outage is None:
            return False, f"{self.what} at {redact_url(self.safe_url)}: not reached yet"
        return False, (
            f"{self.what} at {redact_url(self.safe_url)} unreachable for "
            f"{outage.lasted_s:.0f}s ({outage.error})"
        )

    def up(self) -> None:
        ended = self._outage.recovered()
        if ended is None:
            return
        if ended.failures:
            self.log.warning(
                "%s%s at %s is reachable again after %.1fs",
                self.prefix,
                self.what,
                redact_url(self.safe_url),
                ended.lasted_s,
            )
        else:
            self.log.info(
                "%sconnected to %s at %s", self.prefix, self.what, redact_url(self.safe_url)
            )

    def down(self, exc: BaseException, stop: threading.Event | None = None) -> None:
        """Record a failure and wait before the next try (returns early when ``stop`` is set)."""
        delay = self.failed(exc)
        if stop is None:
            time.sleep(delay)
        else:
            stop.wait(delay)

    def failed(self, exc: BaseException) -> float:
        """Record a failure (logging the first of an outage); return how long to wait before
        the next try."""
        error = f"{type(exc).__name__}: {redact(str(exc), self.secrets) or 'no detail'}"
        failures = self._outage.failed(error[:200])
        if failures == 1:
            self.log.warning(
                "%s%s %s at %s (%s); retrying with backoff up to %gs, quietly until it answers",
                self.prefix,
                "lost" if self._outage.ever_up else "cannot reach",
                self.what,
                redact_url(self.safe_url),
                error,
                self.policy.max_s,
            )
        return self.policy.delay_s(failures)


class Writer:
    """Applies acknowledgements, dead letters and marker keys in pipelined batches.

    Worker threads only append to a queue; one thread turns whatever has accumulated into
    one MULTI/EXEC pipeline (stream keys share a hash tag, so this is legal on a Redis
    Cluster) and one plain pipeline (marker keys live on any slot). A batch that fails for
    a transient reason is retried as a whole after the link's backoff; duplicates that a
    replay may cause (a dead letter written twice) are harmless, losses are not.
    """

    def __init__(
        self,
        client: redis.Redis,
        link: RedisLink,
        *,
        ack: Callable[[Pipeline, list], None] | None = None,
    ) -> None:
        self._client = client
        self._link = link
        self._ack_fn = ack
        self._cond = threading.Condition()
        self._acks: list = []
        self._tx: collections.deque = collections.deque()
        self._plain: collections.deque = collections.deque()
        self._busy = 0
        self._closing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fatal: BaseException | None = None
        #: Told ``(thread_name, exc)`` if the writer thread dies of an unexpected exception:
        #: nothing would be acknowledged after that, so the owner must stop, not carry on.
        self.on_crash: Callable[[str, BaseException], None] | None = None
        self.crashed: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="s3s3-redis-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            self.crashed = exc
            with self._cond:
                self._busy = 0
                self._cond.notify_all()
            if self.on_crash is not None:
                self.on_crash(threading.current_thread().name, exc)
            else:
                log.error(
                    "thread %s crashed: %s: %s",
                    threading.current_thread().name,
                    type(exc).__name__,
                    redact(str(exc)),
                    exc_info=exc,
                )

    def ack(self, entry_id) -> None:
        with self._cond:
            self._acks.append(entry_id)
            self._cond.notify()

    def add(self, fn: Callable[[Pipeline], object], *, transaction: bool) -> None:
        """Queue ``fn(pipeline)``; with ``transaction`` it joins the MULTI/EXEC batch."""
        with self._cond:
            (self._tx if transaction else self._plain).append(fn)
            self._cond.notify()

    def close(self, timeout_s: float) -> int:
        """Write what is queued within ``timeout_s``; return how many writes were left."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (
                (self._acks or self._tx or self._plain or self._busy)
                and time.monotonic() < deadline
                and self._thread
                and self._thread.is_alive()
            ):
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            left = len(self._acks) + len(self._tx) + len(self._plain) + self._busy
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if left and self.crashed is not None:
            left = self._flush_after_crash()
        return left

    def _flush_after_crash(self) -> int:
        """One last try, in the caller's thread, to write what a crashed writer left queued
        (the hand-back at shutdown): the crash may have been one garbled reply."""
        with self._cond:
            acks, tx, plain = self._take()
        try:
            self._write(acks, tx, plain)
        except Exception as exc:
            log.error(
                "%d Redis writes left after the writer crashed could not be made either (%s: %s)",
                len(acks) + len(tx) + len(plain),
                type(exc).__name__,
                redact(str(exc)),
            )
            return len(acks) + len(tx) + len(plain)
        return 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._acks or self._tx or self._plain) and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                acks, tx, plain = self._take()
                self._busy = len(acks) + len(tx) + len(plain)
            try:
                self._write(acks, tx, plain)
            except FATAL_ERRORS as exc:
                self.fatal = exc
                log.error(
                    "Redis refused a write (%s: %s); %d writes dropped",
                    type(exc).__name__,
                    redact(str(exc)),
                    self._busy,
                )
                continue
            except TRANSIENT_ERRORS as exc:
                with self._cond:
                    self._acks[:0] = acks
                    self._tx.extendleft(reversed(tx))
                    self._plain.extendleft(reversed(plain))
                self._link.down(exc, self._stop)
                continue
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()
            self._link.up()

    def _take(self) -> tuple[list, list, list]:
        """Empty the queues (with ``_cond`` held): acknowledgements, MULTI/EXEC writes, plain
        writes."""
        acks, self._acks = self._acks, []
        tx, plain = list(self._tx), list(self._plain)
        self._tx.clear()
        self._plain.clear()
        return acks, tx, plain

    def _write(self, acks: list, tx: list, plain: list) -> None:
        if acks or tx:
            pipe = self._client.pipeline(transaction=True)
            if acks and self._ack_fn is not None:
                self._ack_fn(pipe, acks)
            for fn in tx:
                fn(pipe)
            self._report(pipe.execute(raise_on_error=False))
        if plain:
            pipe = self._client.pipeline(transaction=False)
            for fn in plain:
                fn(pipe)
            self._report(pipe.execute(raise_on_error=False))

    @staticmethod
    def _report(results: list) -> None:
        for result in results:
            if isinstance(result, TRANSIENT_ERRORS):
                raise result
            if isinstance(result, Exception):
                # A command Redis rejected (a stream that vanished with a Redis restart):
                # replaying would fail the same way.
                log.error("Redis rejected a write: %s: %s", type(result).__name__, result)


def queue_marker(writer: Writer, cfg: RedisConfig, result: Finished) -> None:
    """The 2015 marker key ``CHANNEL=>KEY``: set after a copy, removed after a delete."""
    marker = f"{cfg.channel}=>{result.key}"
    if result.outcome in (Outcome.COPIED, Outcome.SKIPPED):
        writer.add(lambda pipe: pipe.set(marker, "True"), transaction=False)
    elif result.outcome == Outcome.DELETED:
        writer.add(lambda pipe: pipe.delete(marker), transaction=False)
