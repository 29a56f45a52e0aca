"""The listener's lifecycle: an intake, a :class:`~.replicator.Replicator`, and how they start
and stop (``s3s3listen`` without its console edge).

:class:`Listener` checks the endpoints, starts the sweep of stale multipart uploads, opens
the intake through the factory it is given, runs the intake and the replicator until told
to stop (or until a thread crashes or the intake meets a fatal error), lets work in flight
finish within the grace period, hands the rest back to the intake, and returns how it
stopped (a :class:`Stopped`). It never imports redis nor parses messages: the intake (see
:class:`Intake`, made by ``s3s3.queue.intake.open_intake``) does both. It installs no signal
handler and chooses no exit code: the console script does both, from the events it sets and
the status returned.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from s3s3.config import Settings
from s3s3.errors import EndpointError, FatalEndpointError
from s3s3.listener.counters import Counters
from s3s3.listener.observer import Observer
from s3s3.listener.ranges import RangeReconciler, RangeWorker
from s3s3.listener.replicator import Copier, JobResult, Replicator, ReplicatorState
from s3s3.listener.threads import guarded, log_crash
from s3s3.replay import check_versioning
from s3s3.retry import Policy
from s3s3.store.endpoint import Endpoint, make_endpoints
from s3s3.transfer import copy_object, sweep_uploads

log = logging.getLogger("s3s3.listen")


class Intake(Protocol):
    """Where the daemon's work comes from, and where its acknowledgements go.

    ``start`` readies what ``complete`` and ``hand_back`` need (the acknowledgement
    writer), reporting a thread of its own that dies to ``on_crash``; ``run`` reads work and
    submits it to the replicator until ``stop`` is set (it sets ``stop`` itself on a fatal
    error, kept in ``fatal``); ``complete`` is told of each finished job, ``hand_back`` of
    the tickets left unfinished at shutdown; ``close`` writes what is queued.
    """

    @property
    def fatal(self) -> BaseException | None: ...

    def describe(self) -> str: ...

    def start(self, *, on_crash: Callable[[str, BaseException], None]) -> None: ...

    def run(self, replicator: Replicator, stop: threading.Event) -> None: ...

    def complete(self, tickets: list, result: JobResult) -> None: ...

    def hand_back(self, tickets: list) -> int: ...

    def close(self, timeout_s: float) -> None: ...

    def redis_state(self) -> tuple[bool, str]: ...


class RangeIntake(Intake, Protocol):
    """An intake that also hands out ranges of ranged reconciles (stream mode): ``run_ranges``
    reads them into a range worker until ``stop`` is set (returning at once when it has
    none to give), ``complete_range`` and ``hand_back_ranges`` are told of them."""

    def run_ranges(self, worker: RangeWorker, stop: threading.Event) -> None: ...

    def complete_range(self, tickets: list, result: object) -> None: ...

    def hand_back_ranges(self, tickets: list) -> int: ...


@dataclass(frozen=True)
class Running:
    """What a running listener shows its watchers (readiness, gauges): read when asked."""

    replicator: ReplicatorState
    redis_up: bool
    redis_problem: str
    source: str
    destinations: tuple[str, ...]

    def problems(self) -> list[str]:
        """Why the listener cannot replicate now; empty when it can."""
        found = [] if self.redis_up else [self.redis_problem]
        for name, (seconds, held) in sorted(self.replicator.down.items()):
            role = "source" if name == self.source else "destination"
            found.append(f"{role} {name!r} down for {seconds:.0f}s ({held} jobs held)")
        return found


#: Makes the intake, when the daemon runs: ``open_intake(settings, counters=...)``.
IntakeFactory = Callable[..., Intake]


class Status(enum.Enum):
    """How the daemon stopped; the console script maps each to its exit code."""

    STOPPED = "stopped"  # asked to stop, and did so cleanly
    REFUSED = "refused"  # did not start: bad credentials or a missing bucket (logged)
    FATAL = "fatal"  # the intake met an error retrying cannot fix (Redis refused s3s3)
    CRASHED = "crashed"  # a thread died of an unexpected exception: restart the process


@dataclass(frozen=True)
class Stopped:
    """What :meth:`Listener.run` returns."""

    status: Status
    thread: str | None = None  # CRASHED: the first thread that died
    error: BaseException | None = None  # FATAL: the intake's fatal error


class Listener:
    """``s3s3listen`` as an object: an intake, a :class:`Replicator`, and their lifecycle.

    Embed it with ``Listener(settings, open_intake=open_intake).run(stop=event)``; set the
    event to stop. Nothing happens in the constructor: endpoints are checked, the intake
    opened and threads started by :meth:`run`. ``copier`` copies one key (tests give
    another); ``source`` and ``destinations`` replace the endpoints of ``settings``.
    ``reconcile_range`` (the bucket job's, which ``s3s3listen`` injects) makes it take
    ranges of ranged reconciles too, ``range_slots`` at a time, beside the keys.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        open_intake: IntakeFactory,
        counters: Counters | None = None,
        copier: Copier = copy_object,
        source: Endpoint | None = None,
        destinations: Sequence[Endpoint] | None = None,
        observer: Observer | None = None,
        reconcile_range: RangeReconciler | None = None,
        range_slots: int = 1,
    ) -> None:
        self.settings = settings
        self.reconcile_range = reconcile_range
        self.range_slots = range_slots
        self.open_intake = open_intake
        self.counters = counters or Counters()
        self.copier = copier
        self.observer = observer
        self._source = source
        self._destinations = destinations
        self._parts: tuple[Replicator, Intake] | None = None

    def running(self) -> Running | None:
        """The state of the running listener; None before it runs (and after)."""
        parts = self._parts
        if parts is None:
            return None
        replicator, intake = parts
        redis_up, redis_problem = intake.redis_state()
        return Running(
            replicator=replicator.state(),
            redis_up=redis_up,
            redis_problem=redis_problem,
            source=replicator.source.name,
            destinations=tuple(d.name for d in replicator.destinations),
        )

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        hurry: threading.Event | None = None,
        reasons: Sequence[str] = (),
    ) -> Stopped:
        """Replicate until ``stop`` is set, a thread crashes or the intake meets a fatal error.

        Then intake stops, work in flight gets ``[listen] grace``, and the rest is handed
        back (stream mode: re-added for any listener; pub/sub: logged as lost), so that a
        restart loses nothing in stream mode. ``hurry`` set stops waiting for work in flight
        (a second signal). ``reasons`` (a signal's name, appended by whoever sets ``stop``)
        names the cause in the log.
        """
        stop = stop or threading.Event()
        hurry = hurry or threading.Event()
        settings = self.settings
        lcfg = settings.listen
        if self._source is None or not self._destinations:
            built = make_endpoints(
                [settings.source, *settings.destinations],
                bwlimit=lcfg.bwlimit,
                workers=lcfg.workers,
            )
        source_ep = self._source or built[0]
        dest_eps = list(self._destinations or built[1:])
        if not _check_endpoints([source_ep, *dest_eps]):
            return Stopped(Status.REFUSED)
        if settings.source.versions and not _check_versioning(dest_eps):
            return Stopped(Status.REFUSED)
        # Uploads an earlier run left open (kill -9, a copy stuck past the grace); in the
        # background, so that replication starts at once.
        threading.Thread(
            target=_sweep_uploads, args=(dest_eps,), name="s3s3-upload-sweep", daemon=True
        ).start()
        intake = self.open_intake(settings, counters=self.counters)
        replicator = Replicator(
            source_ep,
            dest_eps,
            on_complete=intake.complete,
            copier=self.copier,
            workers=lcfg.workers,
            delete=lcfg.delete,
            versions=settings.source.versions,
            delete_markers=settings.source.delete_markers,
            retry=Policy(
                attempts=settings.redis.max_deliveries,
                base_s=lcfg.retry_base_s,
                max_s=lcfg.retry_max_s,
            ),
            counters=self.counters,
            observer=self.observer,
        )
        intake_stop = threading.Event()
        crashes: list[str] = []

        def crashed(name: str, exc: BaseException, *, logged: bool = False) -> None:
            # A thread is gone: stop the rest, hand back, and exit for a restart.
            if not logged:
                log_crash(name, exc)
            crashes.append(name)
            intake_stop.set()

        replicator.on_crash = lambda name, exc: crashed(name, exc, logged=True)
        # A dead acknowledgement writer would leave every copy unacknowledged: a crash too.
        intake.start(on_crash=crashed)
        replicator.start()
        reader = threading.Thread(
            target=guarded(intake.run, crashed),
            args=(replicator, intake_stop),
            name="s3s3-intake",
            daemon=True,
        )
        reader.start()
        ranges: RangeWorker | None = None
        range_reader: threading.Thread | None = None
        if self.reconcile_range is not None and hasattr(intake, "run_ranges"):
            ranged: RangeIntake = intake  # type: ignore[assignment]
            ranges = RangeWorker(
                self.reconcile_range,
                on_complete=ranged.complete_range,
                slots=self.range_slots,
                retry=replicator.retry,
                on_crash=crashed,
            )
            ranges.start()
            range_reader = threading.Thread(
                target=guarded(ranged.run_ranges, crashed),
                args=(ranges, intake_stop),
                name="s3s3-range-intake",
                daemon=True,
            )
            range_reader.start()
        self._parts = (replicator, intake)
        log.info(
            "s3s3listen started: %s; source %s; destinations %s; %d workers; delete propagation %s",
            intake.describe(),
            settings.source.describe(),
            ", ".join(d.describe() for d in settings.destinations),
            lcfg.workers,
            "on" if lcfg.delete else "off",
        )
        next_summary = time.monotonic() + lcfg.summary_interval_s
        while not stop.is_set() and not intake_stop.is_set():
            stop.wait(max(0.0, min(1.0, next_summary - time.monotonic())))
            if time.monotonic() >= next_summary:
                next_summary = time.monotonic() + lcfg.summary_interval_s
                log.info("%s", replicator.summary_line())
        if reasons:
            log.info(
                "%s received: stopping intake, finishing in-flight work within %gs",
                reasons[0],
                lcfg.grace_s,
            )
        intake_stop.set()
        if ranges is not None:
            ranges.stop()
        reader.join(timeout=10.0)
        if range_reader is not None:
            range_reader.join(timeout=10.0)
        unfinished = replicator.drain(lcfg.grace_s, cancel=hurry)
        if unfinished:
            intake.hand_back(unfinished)
        if ranges is not None:
            # Their copies were told to stop with the rest; what is left goes back.
            left = ranges.drain(lcfg.grace_s + self.settings.bucket.grace_s, cancel=hurry)
            if left:
                ranged.hand_back_ranges(left)
        intake.close(timeout_s=5.0)
        self._parts = None
        log.info("%s", replicator.summary_line())
        if crashes:
            return Stopped(Status.CRASHED, thread=crashes[0])
        fatal = intake.fatal
        if fatal is not None:
            return Stopped(Status.FATAL, error=fatal)
        return Stopped(Status.STOPPED)


def _sweep_uploads(destinations: Sequence[Endpoint]) -> None:
    """Thread: abort s3s3's stale multipart uploads at every destination (errors are
    logged: a sweep that fails must not stop replication)."""
    try:
        sweep_uploads(destinations)
    except Exception:
        log.exception("aborting stale multipart uploads failed")


def _check_endpoints(endpoints: Sequence[Endpoint]) -> bool:
    """Refuse to start on bad credentials or a missing bucket; tolerate an endpoint that is
    down (its work is held until it answers)."""
    for endpoint in endpoints:
        try:
            endpoint.check_bucket()
        except FatalEndpointError as exc:
            log.error("fatal: %s", exc)
            return False
        except EndpointError as exc:
            log.warning(
                "%s does not answer yet (%s); its work will be held until it does",
                endpoint.cfg.describe(),
                exc,
            )
    return True


def _check_versioning(destinations: Sequence[Endpoint]) -> bool:
    """With ``versions = true``, refuse to start unless every destination that answers has
    versioning Enabled (a history replayed there would collapse to its last version)."""
    for endpoint in destinations:
        try:
            check_versioning(endpoint)
        except FatalEndpointError as exc:
            log.error("fatal: %s", exc)
            return False
        except EndpointError as exc:
            log.warning(
                "%s does not answer yet (%s): its versioning is not checked",
                endpoint.cfg.describe(),
                exc,
            )
    return True


__all__ = ["Intake", "IntakeFactory", "Listener", "RangeIntake", "Status", "Stopped"]
