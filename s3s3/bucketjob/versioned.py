"""The bucket job over a versioned source (``versions = true``, ``--versions``): every version
and, where asked, every delete marker, replayed oldest first at each destination.

The run is the unversioned run's (``runner``: the checks, the pool, the stop and its grace,
the summary), which hands its listing and merge to :func:`reconcile_versions`:

1. each destination's versioning must be Enabled (:func:`replay.check_versioning`): a run
   that would collapse a history into its last version stops before writing anything;
2. the source and every destination are listed with ListObjectVersions at once, a few pages
   ahead, and merged by key (:func:`merge_by_key`);
3. a key whose histories the listings show in step (:func:`versionplan.plan_key` by
   fingerprint) costs nothing more; any other is one pool item per destination, which reads
   the identities the plan asks for and replays its steps in order
   (:func:`replay.replay_key`).

Nothing is deleted for good: versions only at the destination stay, and ``--delete`` is
refused with versions (a destination-only key is not told from a replayed one by a
listing). Memory holds the listings' pages in flight and each key's history while it is
replayed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import Protocol, TypeVar

from s3s3.bucketjob.destination import Destination
from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.pool import WorkPool
from s3s3.bucketjob.sinks import DryRunSink, Sink, printable
from s3s3.errors import CopyCancelled, EndpointError, FatalEndpointError
from s3s3.listing.versions import KeyVersions, list_key_versions
from s3s3.model import VersionInfo
from s3s3.plan import KeyFilter
from s3s3.replay import check_versioning, plan_replay, replay_key
from s3s3.store.endpoint import Endpoint
from s3s3.versionplan import COPY, MARKER, describe, plan_key

log = logging.getLogger(__name__)


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


def merge_by_key(
    first: Iterator[K], others: Sequence[Iterator[K]]
) -> Generator[tuple[str, K | None, list[K | None]], None, None]:
    """Join listings in ascending UTF-8 byte order of keys: for each key on any side, the
    first side's item (None where it has none) and each other side's."""
    sides = [first, *others]
    heads: list[K | None] = [next(it, None) for it in sides]
    while any(h is not None for h in heads):
        key = min((h.key for h in heads if h is not None), key=lambda k: k.encode("utf-8"))
        row: list[K | None] = []
        for i, head in enumerate(heads):
            if head is not None and head.key == key:
                row.append(head)
                heads[i] = next(sides[i], None)
            else:
                row.append(None)
        yield key, row[0], row[1:]


class VersionedRun(Protocol):
    """What :func:`reconcile_versions` needs of the run (``runner``'s coordinator)."""

    src: Endpoint
    dests: list[Destination]
    options: JobOptions
    pool: WorkPool
    stop: threading.Event
    sink: Sink
    cut_short: bool


def check_destinations(run: VersionedRun) -> None:
    """Every reachable destination must have versioning Enabled: raises the
    :class:`FatalEndpointError` of the first that has not."""
    for dest in run.dests:
        if not dest.broken:
            check_versioning(dest.endpoint)


def reconcile_versions(run: VersionedRun) -> None:
    """List both sides' versions, merge them by key and replay each key's missing history
    (module doc); returns once every key is listed and handed to the pool."""
    cfg = run.options.bucket
    key_filter = KeyFilter(cfg.include, cfg.exclude)
    listings = merge_by_key(
        list_key_versions(run.src, cfg.prefix, ahead=True),
        [_listing(d, cfg.prefix) for d in run.dests],
    )
    try:
        for key, source, dests in listings:
            if run.pool.fatal is not None or run.stop.is_set():
                run.cut_short = True
                break
            if key_filter and not key_filter(key):
                continue
            _handle(run, key, source, dests)
    except ValueError as exc:  # a version listing out of order
        raise FatalEndpointError(
            f"the version listing is out of order ({exc})",
            op="ListObjectVersions",
            endpoint=run.src.name,
            bucket=run.src.bucket,
            code="ListingOrder",
        ) from exc
    finally:
        listings.close()


def _listing(dest: Destination, prefix: str) -> Iterator[KeyVersions]:
    """``dest``'s version listing; ends early, marking it broken, if listing fails."""
    if dest.broken:
        return
    try:
        yield from list_key_versions(dest.endpoint, prefix, ahead=True)
    except FatalEndpointError:
        raise
    except EndpointError as exc:
        dest.mark_broken(f"version listing failed: {exc}")


def _handle(
    run: VersionedRun,
    key: str,
    source: KeyVersions | None,
    dests: Sequence[KeyVersions | None],
) -> None:
    """Count what the listings settle for one key; hand each destination's replay to the
    pool."""
    delete_markers = run.options.delete_markers
    for dest, found in zip(run.dests, dests, strict=True):
        if source is None:
            if found is not None:
                dest.summary.extra += 1
            continue
        dest.summary.listed += 1
        if dest.broken:
            dest.count_unreachable()
            continue
        history = found.versions if found is not None else ()
        plan = plan_key(key, source.versions, history, delete_markers=delete_markers)
        if plan.in_step:
            dest.count_skipped()
            continue
        run.pool.submit(_replay, run, dest, key, source.versions, history)


def _replay(
    run: VersionedRun,
    dest: Destination,
    key: str,
    source: Sequence[VersionInfo],
    history: Sequence[VersionInfo],
) -> None:
    """Worker thread: replay one key's missing history at one destination (in a dry run,
    say what would be)."""
    delete_markers = run.options.delete_markers
    try:
        plan = plan_replay(
            dest.endpoint, key, source, history, delete_markers=delete_markers, policy=dest.policy
        )
        if isinstance(run.sink, DryRunSink):
            if not plan.in_step:
                run.sink.on_plan(f"replay [{dest.name}] {printable(describe(plan))}")
                dest.count_versions(
                    key,
                    copied=sum(1 for s in plan.steps if s.op == COPY),
                    markers=sum(1 for s in plan.steps if s.op == MARKER),
                    size=sum(s.version.size for s in plan.steps),
                )
            else:
                dest.count_skipped()
            return
        result = replay_key(
            run.src,
            dest.endpoint,
            key,
            source,
            history,
            delete_markers=delete_markers,
            cancel=run.pool.abandon,
            plan=plan,
        )
    except CopyCancelled as exc:
        dest.count_failed(key, exc, op="copy")
        return
    except Exception as exc:
        dest.fail_or_stop(key, exc, op="copy")
        return
    if result.versions_copied or result.markers_written:
        dest.count_versions(
            key,
            copied=result.versions_copied,
            markers=result.markers_written,
            size=result.bytes_copied,
        )
    else:
        dest.count_skipped()
