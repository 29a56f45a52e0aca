"""How fast s3s3 talks to its endpoints: a bandwidth limit, a request rate, and a
concurrency that backs off when a server says SlowDown.

    BandwidthLimiter     ``bwlimit``: bytes per second over every GET body the process
                         reads (each source read once, however many destinations it
                         feeds), following a timetable (``config.BwTimetable``)
    TokenBucket          the bucket both rates use: tokens flow in at ``rate`` up to
                         ``capacity``; a taker may run into debt and then sleeps it off
    AdaptiveConcurrency  requests in flight toward one endpoint, halved on a SlowDown and
                         raised by one a second while none comes (AIMD), logged per change
    EndpointPacing       what one :class:`~s3s3.store.endpoint.Endpoint` goes through
                         before every request: its slot, its ``tpslimit``, and the bandwidth
                         limiter its GET bodies share with the other endpoints
    PacedBody            a GET body whose reads take bandwidth tokens in slices

The limiters are objects handed in (one :class:`BandwidthLimiter` for the process, shared
by the endpoints it builds), never module globals, and take their clock and sleep so tests
drive them without waiting. Nothing here sends a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from s3s3.config import BwTimetable, EndpointConfig, describe_rate
from s3s3.errors import EndpointError
from s3s3.store.base import Body

log = logging.getLogger(__name__)

#: A read of a GET body takes its bandwidth tokens this many bytes at a time, so a big read
#: (transfer reads 1 MiB) is paced through its length instead of in one lump.
SLICE_BYTES = 64 * 1024

#: Error codes and HTTP statuses by which a server asks for fewer requests.
SLOWDOWN_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestThrottled",
        "ServiceUnavailable",
        "503",
        "429",
    }
)
SLOWDOWN_STATUSES = frozenset({429, 503})

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def is_slowdown(exc: BaseException) -> bool:
    """Whether ``exc`` is a server asking s3s3 to slow down (503 SlowDown, 429...)."""
    if not isinstance(exc, EndpointError):
        return False
    return exc.code in SLOWDOWN_CODES or exc.status in SLOWDOWN_STATUSES


class TokenBucket:
    """Tokens flow in at ``rate`` a second, up to ``capacity``; :meth:`take` may overdraw
    and then sleeps until the debt is paid, so that many threads together keep the rate
    (each waits for its place in line) and a burst never exceeds ``capacity``.

    ``full``: start with ``capacity`` tokens (a request burst) rather than none (bandwidth:
    no burst at the start, so the average from the first byte holds the rate).
    """

    def __init__(
        self,
        rate: float,
        *,
        capacity: float,
        full: bool = False,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"need a rate and capacity above zero, not {rate} and {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity if full else 0.0
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, amount: float) -> float:
        """Take ``amount`` tokens, sleeping as long as the bucket needs to refill; answers
        the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= amount
            wait_s = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s


class BandwidthLimiter:
    """``bwlimit`` for one process: the bytes read from GET bodies, at the rate the
    timetable gives for the local time now (``now``), looked up on every slice.

    A switch of the timetable (or the first rate) is logged once, and starts an empty
    bucket of about one second's worth (at least one slice) at the new rate.
    """

    def __init__(
        self,
        timetable: BwTimetable,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.timetable = timetable
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._lock = threading.Lock()
        self._rate: float | None = None
        self._bucket: TokenBucket | None = None
        self._started = False

    def __repr__(self) -> str:
        return f"BandwidthLimiter({self.timetable.text!r})"

    def rate_bytes_s(self) -> float | None:
        """The limit in force now, in bytes per second (None: no limit); for metrics."""
        return self._bucket_now()[0]

    def _bucket_now(self) -> tuple[float | None, TokenBucket | None]:
        slot = self.timetable.slot_at(self._now())
        rate = None if slot is None else slot.rate_bytes_s
        with self._lock:
            if rate != self._rate or not self._started:
                if self._started or rate is not None:
                    log.info(
                        "bwlimit %s from now on (bwlimit %r)",
                        describe_rate(rate),
                        self.timetable.text,
                    )
                self._started = True
                self._rate = rate
                self._bucket = (
                    None
                    if rate is None
                    else TokenBucket(
                        rate,
                        capacity=max(rate, SLICE_BYTES),
                        clock=self._clock,
                        sleep=self._sleep,
                    )
                )
            return self._rate, self._bucket

    def take(self, nbytes: int) -> float:
        """Account for ``nbytes`` read, sleeping while over the limit; answers the
        seconds slept."""
        _rate, bucket = self._bucket_now()
        return 0.0 if bucket is None else bucket.take(nbytes)


class PacedBody:
    """A GET body whose reads go through a :class:`BandwidthLimiter`, a slice at a time."""

    def __init__(
        self, body: Body, limiter: BandwidthLimiter, *, slice_bytes: int = SLICE_BYTES
    ) -> None:
        self._body = body
        self._limiter = limiter
        self._slice = slice_bytes

    def read(self, amt: int | None = None) -> bytes:
        pieces = []
        left = -1 if amt is None or amt < 0 else amt
        while left != 0:
            want = self._slice if left < 0 else min(self._slice, left)
            piece = self._body.read(want)
            if not piece:
                break
            self._limiter.take(len(piece))
            pieces.append(piece)
            if left > 0:
                left -= len(piece)
        return b"".join(pieces)

    def close(self) -> None:
        self._body.close()


class AdaptiveConcurrency:
    """How many requests may be in flight toward one endpoint: ``ceiling`` at first,
    halved (down to ``floor``) when a request answers SlowDown, raised by one when a
    request succeeds at least ``increase_every_s`` after the last change.

    One SlowDown halves once: answers to requests sent before the last halving (which
    all met the same congestion) do not halve again, as TCP halves once a window. Each
    change is logged once, with the endpoint's section name, old and new limit and why.
    """

    def __init__(
        self,
        name: str,
        *,
        ceiling: int,
        floor: int = 1,
        increase_every_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, not {floor} and {ceiling}")
        self.name = name
        self.ceiling = ceiling
        self.floor = floor
        self.increase_every_s = increase_every_s
        self._clock = clock
        self._limit = ceiling
        self._in_flight = 0
        self._epoch = 0  # bumped by each halving
        self._changed_at = clock()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # threads waiting for a slot

    @property
    def limit(self) -> int:
        """Requests allowed in flight now (for metrics)."""
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self) -> int:
        """Wait for a free slot; answers the ticket to :meth:`release` it with."""
        # The plain lock, not the condition's Python-level ``with``: this runs around
        # every request; the condition is used only when a slot must be waited for.
        with self._lock:
            while self._in_flight >= self._limit:
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1
            self._in_flight += 1
            return self._epoch

    def release(self, ticket: int, *, outcome: str) -> None:
        """Free the slot of ``ticket``. ``outcome``: ``"ok"`` (the server answered),
        ``"slowdown"`` (it asked us to slow down), or ``"failed"`` (anything else, which
        changes nothing)."""
        with self._lock:
            self._in_flight -= 1
            if outcome == "ok":
                if self._limit < self.ceiling:
                    if self._clock() - self._changed_at >= self.increase_every_s:
                        self._change(self._limit + 1, "speeding up")
            elif outcome == "slowdown" and ticket == self._epoch:
                self._epoch += 1
                self._change(max(self.floor, self._limit // 2), "slowed down")
            if self._waiting:
                self._cond.notify_all()

    def _change(self, new: int, why: str) -> None:
        self._changed_at = self._clock()
        if new == self._limit:
            return
        old, self._limit = self._limit, new
        if why == "slowed down":
            log.warning("[%s] slowed down: %d -> %d requests in flight", self.name, old, new)
        elif new == self.ceiling:
            log.info("[%s] recovered: %d -> %d requests in flight", self.name, old, new)
        else:
            log.info("[%s] speeding up: %d -> %d requests in flight", self.name, old, new)


class EndpointPacing:
    """What every request of one endpoint goes through: a slot of its
    :class:`AdaptiveConcurrency`, then a token of its ``tpslimit`` bucket (so the rate is
    the rate of requests sent); GET bodies go through the shared ``bandwidth`` limiter."""

    def __init__(
        self,
        concurrency: AdaptiveConcurrency,
        *,
        tps: TokenBucket | None = None,
        bandwidth: BandwidthLimiter | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.tps = tps
        self.bandwidth = bandwidth

    @classmethod
    def for_endpoint(
        cls,
        cfg: EndpointConfig,
        *,
        ceiling: int | None = None,
        bandwidth: BandwidthLimiter | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> EndpointPacing:
        """The pacing of ``cfg``: its ``tpslimit``/``tpslimit_burst``, a concurrency that
        starts at ``ceiling`` (the workers that may call it; by default its
        ``max_pool_connections``), and the process's ``bandwidth`` limiter."""
        tps = (
            TokenBucket(
                cfg.tpslimit, capacity=cfg.tpslimit_burst, full=True, clock=clock, sleep=sleep
            )
            if cfg.tpslimit > 0
            else None
        )
        concurrency = AdaptiveConcurrency(
            cfg.name, ceiling=max(1, ceiling or cfg.max_pool_connections), clock=clock
        )
        return cls(concurrency, tps=tps, bandwidth=bandwidth)

    def send(self, request: Callable[[], T]) -> T:
        """``request()`` once a slot and a token are free; the concurrency then hears how
        it went. A plain call rather than a context manager: it wraps every request s3s3
        sends, where a generator's frames cost more than the slot itself."""
        concurrency = self.concurrency
        ticket = concurrency.acquire()
        try:
            if self.tps is not None:
                self.tps.take(1)
            result = request()
        except BaseException as exc:
            concurrency.release(ticket, outcome="slowdown" if is_slowdown(exc) else "failed")
            raise
        concurrency.release(ticket, outcome="ok")
        return result

    def paced_body(self, body: Body) -> Body:
        """``body``, its reads paced by the bandwidth limiter when there is one."""
        return body if self.bandwidth is None else PacedBody(body, self.bandwidth)


def bandwidth_limiter(
    timetable: BwTimetable,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    now: Callable[[], datetime] = datetime.now,
) -> BandwidthLimiter | None:
    """The process's limiter for ``timetable``, or None when it never limits."""
    if timetable.is_off:
        return None
    return BandwidthLimiter(timetable, clock=clock, sleep=sleep, now=now)
