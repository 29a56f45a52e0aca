"""The one retry policy: how often, how long apart and for how long s3s3 tries again.

One layer retries each operation. The stores (``store/``) try once and raise; the caller
that owns the operation (the bucket job for a key, a listing page or a delete batch; the
listener for a job; the Redis link for a connection) retries it through a :class:`Policy`,
either blocking in :func:`call` or on its own timer with :meth:`Policy.next_delay_s`.

One operation inside a copy is retried where it failed: a multipart part, or a streamed PUT,
that the destination refused with a retryable error is sent again by ``transfer`` from a
ranged GET of exactly its bytes (a streamed body cannot be replayed, and the caller's retry
would otherwise read and send everything again). The two layers do not multiply:

- the in-place tries of an upload's parts draw on the destination's ``attempts`` once for
  the whole upload, over every attempt of the caller (the count is kept with the upload's
  progress, ``s3s3.resume``); once they are spent, a failing part is tried once per attempt
  of the caller and its failure raised as it is;
- the caller's retry of the copy resumes the upload from the parts already there, so it
  sends no part twice;
- a streamed single PUT (no progress to keep) is sent again in place once.

So a destination that keeps failing gets at most about ``2 x attempts`` requests for the
failing part of one key, and the key is reported failed within the caller's ``deadline_s``
(plus one in-place wait). The final failure keeps its ``retryable`` and ``scope``: the
listener's breaker still hears of an outage.

What may be retried is the error's own business (``retryable`` on every s3s3 error, see
``errors``); an exception s3s3 did not map is never retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from s3s3.errors import is_retryable

if TYPE_CHECKING:
    from s3s3.config import EndpointConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """Capped exponential backoff with jitter, a number of attempts and a deadline.

    ``attempts`` counts every try, the first included (``None``: no limit, for loops that
    must outlast any outage, such as the Redis link). ``deadline_s`` bounds the time from the
    first try to the moment a failure is final (``None``: attempts alone decide).
    """

    attempts: int | None = 5
    base_s: float = 0.5
    max_s: float = 20.0
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        if self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError(f"need 0 <= base_s <= max_s, not {self.base_s} and {self.max_s}")

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1-based): about base, 2x base,
        4x base... up to ``max_s``, each drawn from [50%, 100%] so that many clients that
        failed together do not come back together."""
        # Doublings capped: a loop without an attempt limit (the Redis link) fails on and
        # on, and 2.0 ** 1024 overflows; past the cap the window is max_s anyway.
        doublings = min(max(0, failures - 1), 1000)
        window = min(self.max_s, self.base_s * 2.0**doublings)
        return window * random.uniform(0.5, 1.0)

    def next_delay_s(self, attempt: int, elapsed_s: float) -> float | None:
        """The wait before attempt ``attempt + 1`` after attempt ``attempt`` failed
        ``elapsed_s`` after the first began, or None when the failure is final."""
        if self.attempts is not None and attempt >= self.attempts:
            return None
        delay = self.delay_s(attempt)
        if self.deadline_s is not None and elapsed_s + delay > self.deadline_s:
            return None
        return delay

    @classmethod
    def for_endpoint(cls, cfg: EndpointConfig) -> Policy:
        """The policy of operations toward one endpoint: its ``max_attempts`` and
        ``retry_deadline``."""
        return cls(attempts=cfg.max_attempts, deadline_s=cfg.retry_deadline_s)


#: A single try: for callers whose own caller retries (and for tests).
ONCE = Policy(attempts=1)


def call(
    fn: Callable[[], T],
    *,
    policy: Policy,
    what: str,
    retryable: Callable[[BaseException], bool] = is_retryable,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    failed: tuple[BaseException, float] | None = None,
) -> T:
    """``fn()``, tried again after a retryable failure while ``policy`` allows.

    The last failure is raised as it is, so the caller still sees its ``retryable`` and
    ``scope``. A set ``cancel`` ends the wait and raises that failure at once. ``what``
    names the operation in the log line of each retry (never a secret: a key and an
    endpoint's section name). ``failed`` is a first try already made elsewhere (its
    retryable failure, and the ``clock()`` it began at): the loop goes on from it, its
    backoff, attempts and deadline included (a copy that first ran as part of a fan-out).
    """
    started = clock() if failed is None else failed[1]
    attempt = 0
    if failed is not None:
        attempt = 1
        _back_off(failed[0], attempt, policy, what, cancel, clock() - started)
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not retryable(exc):
                raise
            _back_off(exc, attempt, policy, what, cancel, clock() - started)


def _back_off(
    exc: BaseException,
    attempt: int,
    policy: Policy,
    what: str,
    cancel: threading.Event | None,
    elapsed_s: float,
) -> None:
    """Wait before the try after ``attempt`` failed with ``exc``; raise ``exc`` when the
    policy allows no further try, or when ``cancel`` is set meanwhile."""
    delay = policy.next_delay_s(attempt, elapsed_s)
    if delay is None:
        raise exc
    total = "" if policy.attempts is None else f" of {policy.attempts}"
    log.warning("%s failed (attempt %d%s), retrying in %.1fs: %s", what, attempt, total, delay, exc)
    if cancel is not None:
        if cancel.wait(delay):
            raise exc
    else:
        time.sleep(delay)
