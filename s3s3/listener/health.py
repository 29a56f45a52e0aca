"""Endpoint health, the listener's circuit breaker: which endpoints are down, which job probes
each one, and which jobs wait for it.

- **An outage** is a failure that says "this endpoint cannot answer now": retryable and of
  endpoint scope (:func:`is_outage`: throttling, 5xx, timeouts, refused or reset
  connections, a source body cut short). It is pinned on the endpoint that failed, which is
  then *down*: the job, and every later job needing it, is held (not retried in a loop, not
  dropped), and one job at a time probes it again after a capped, jittered backoff
  (:meth:`s3s3.retry.Policy.delay_s` of the failures in a row). A success releases every
  job held for it.
- Whether an outage also counts against the job (it does only when the endpoint looked
  healthy, so that a long outage dead-letters nothing) is the replicator's decision;
  :meth:`Breaker.fail` tells it what it needs to know.

Plain state without a lock, a thread or a timer: the replicator calls every method with its
own lock held, queues the jobs they release, and sets the timers they ask for. Nothing here
copies, retries or knows where work comes from.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from s3s3.errors import EndpointError, Scope, ShortRead, is_retryable, scope_of
from s3s3.listener.ordering import Job
from s3s3.retry import Policy

log = logging.getLogger("s3s3.listen")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says its endpoint cannot answer now (and may later): retryable, and
    about the endpoint rather than the key."""
    return is_retryable(exc) and scope_of(exc) is Scope.ENDPOINT


class Health:
    """Reachability of one endpoint, shared by every job that needs it."""

    __slots__ = ("name", "failures", "retry_at", "probing", "waiting", "down_since")

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0  # outages in a row; 0 is up
        self.retry_at = 0.0  # when the next probe may go
        self.probing = False  # a probe is out
        self.waiting: collections.deque[Job] = collections.deque()
        self.down_since = 0.0


class Failure(NamedTuple):
    """What :meth:`Breaker.fail` decided about one outage."""

    looked_healthy: bool  # the endpoint was up: the failure may be the key's own
    released: list[Job]  # jobs to queue now: others may probe what this job probed
    wake_at: float | None  # a new backoff started: call wake_one() then


class Breaker:
    """The health of every endpoint of one replicator; see the module docstring.

    Only ``backoff``'s delays are used: an endpoint is probed for as long as it is down.
    """

    def __init__(self, names: Iterable[str], *, backoff: Policy) -> None:
        self.backoff = backoff
        self._health = {name: Health(name) for name in names}

    def __getitem__(self, name: str) -> Health:
        return self._health[name]

    def __iter__(self) -> Iterator[Health]:
        return iter(self._health.values())

    def culprit(self, exc: BaseException, healths: Sequence[Health], *, source: str) -> Health:
        """The endpoint an outage is pinned on: the one the error names, the source for a
        body cut short, else the last of those the job was calling."""
        for cause in _causes(exc):
            if isinstance(cause, EndpointError) and cause.endpoint in self._health:
                return self._health[cause.endpoint]
            if isinstance(cause, ShortRead):
                return self._health[source]
        return healths[-1]

    def gate(self, job: Job, healths: Sequence[Health], now: float) -> Health | None:
        """None if ``job`` may call these endpoints now, else the endpoint that is down.

        An endpoint that is down lets one job through (a probe) once its backoff expires;
        the job's ``probing`` lists what it probes.
        """
        probes = []
        for health in healths:
            if not health.failures:
                continue
            if not health.probing and now >= health.retry_at:
                probes.append(health)
            else:
                return health
        for health in probes:
            health.probing = True
        job.probing = probes
        return None

    def hold(self, job: Job, health: Health, now: float) -> bool:
        """Hold ``job`` until ``health`` answers again; False if it should run now instead."""
        if health.failures and (health.probing or now < health.retry_at):
            # A probe is out, or a timer is set for retry_at: either releases this job.
            health.waiting.append(job)
            return True
        # It answered meanwhile, or its retry time passed with nobody waiting to probe it
        # (the timer found no one): run now, as the probe if need be.
        return False

    def recovered(self, job: Job, healths: Sequence[Health], now: float) -> list[Job]:
        """``job`` got through ``healths``: those that were down are up; return the jobs
        they held."""
        released: list[Job] = []
        for health in healths:
            if health.failures:
                log.warning(
                    "[%s] answers again after %.1fs; %d held jobs resume",
                    health.name,
                    now - health.down_since,
                    len(health.waiting),
                )
                health.failures = 0
                health.probing = False
                released.extend(health.waiting)
                health.waiting.clear()
        job.probing = []
        return released

    def wake_one(self, health: Health) -> Job | None:
        """The held job that probes ``health`` now that its backoff expired (the others wait
        for its result), if one is waiting and no probe is out."""
        if health.failures and not health.probing and health.waiting:
            return health.waiting.popleft()
        return None

    def release_probes(self, job: Job) -> list[Job]:
        """``job`` stops probing: return one waiting job per endpoint it probed, to probe."""
        released = []
        for health in job.probing:
            health.probing = False
            if health.waiting:
                released.append(health.waiting.popleft())
        job.probing = []
        return released

    def fail(self, job: Job, culprit: Health, now: float) -> Failure:
        """An outage of ``culprit`` met by ``job``.

        The first outage after a success, or a failed probe, starts the next backoff; a job
        that was let through while a probe was out changes nothing.
        """
        probed = culprit in job.probing
        if probed:
            job.probing.remove(culprit)
        released = self.release_probes(job)
        looked_healthy = not culprit.failures
        wake_at = None
        if looked_healthy or probed:
            culprit.failures += 1
            culprit.retry_at = now + self.backoff.delay_s(culprit.failures)
            if looked_healthy:
                culprit.down_since = now
            wake_at = culprit.retry_at
        culprit.probing = False
        return Failure(looked_healthy, released, wake_at)

    def down(self) -> list[Health]:
        """The endpoints that are down now."""
        return [h for h in self._health.values() if h.failures]

    def forget_waiting(self) -> None:
        """Drop every held job (shutdown: their tickets go back to the intake)."""
        for health in self._health.values():
            health.waiting.clear()


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
