"""A bucket's key space cut into consecutive ranges where its keys are, in a few requests:
the work items of a reconcile shared by a fleet of listeners, one range each.

The probes are those of the parallel listing: the first page after a point of the key space
(``StartAfter``). A page shows every key from its point up to its last key, so the probes
together show some stretches of the bucket key by key and leave gaps (after a truncated
page) of unknown size. Gaps are bisected (:func:`parallel.split_point`), a few probes at once,
until the bucket is known whole or sampled in enough places; the ranges are then cut at
known keys, weighing each known key as one and each gap as a page, so every range holds at
least one key and the ranges are about as even as the probes can tell.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from s3s3 import retry
from s3s3.keyspace import KeyRange
from s3s3.listing.parallel import split_point
from s3s3.listing.serial import describe, fetch_page
from s3s3.store.base import Store

#: Rounds of probes at most, after the first page.
MAX_ROUNDS = 12
#: Probing stops once the bucket's unknown stretches are this many per range asked for.
GAPS_PER_RANGE = 2

# (after, through): every key k with after < k <= through is known (None: open that side).
_Stretch = tuple[str | None, str | None]


def split_ranges(
    store: Store,
    prefix: str,
    count: int,
    *,
    concurrency: int,
    page_size: int = 1000,
    policy: retry.Policy | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> list[KeyRange]:
    """Up to ``count`` consecutive ranges covering every key under ``prefix``: the first
    starts at the beginning (``start_after`` None), the last goes to the end (``end`` None),
    each holds at least one key (an empty bucket gets the one range of everything).

    At most ``concurrency`` probes are on the wire at once; a bucket of one page costs one
    request, a bigger one at most ``1 + max_rounds * concurrency``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    policy = policy or retry.Policy.for_endpoint(store.cfg)
    what = describe(store, prefix)
    known: set[str] = set()
    stretches: list[_Stretch] = []

    def probe(after: str | None) -> tuple[_Stretch, list[str]]:
        page = fetch_page(
            store, prefix, page_size=page_size, policy=policy, what=what, start_after=after
        )
        keys = [o.key for o in page.objects]
        through = keys[-1] if page.truncated and keys else None
        return (after, through), keys

    def add(results) -> None:
        for stretch, keys in results:
            stretches.append(stretch)
            known.update(keys)

    add([probe(None)])
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="split") as pool:
        for _ in range(max_rounds):
            gaps = _gaps(stretches)
            if not gaps or len(gaps) >= GAPS_PER_RANGE * count:
                break
            points = _probe_points(gaps, concurrency, prefix)
            if not points:
                break
            add(pool.map(probe, points))
    return _cut(sorted(known), _gaps(stretches), count, gap_weight=page_size)


def _gaps(stretches: list[_Stretch]) -> list[tuple[str, str | None]]:
    """The unknown stretches ``(last known key, next probe point or None]`` between the
    known ones, in key order."""
    ordered = sorted(stretches, key=lambda s: (s[0] is not None, s[0] or ""))
    first, reach = ordered[0]  # the first probe, from the beginning of the key space
    assert first is None
    gaps: list[tuple[str, str | None]] = []
    for after, through in ordered[1:]:
        if reach is None:  # known to the end
            return gaps
        assert after is not None
        if after > reach:
            gaps.append((reach, after))
        if through is None or through > reach:
            reach = through
    if reach is not None:
        gaps.append((reach, None))
    return gaps


def _probe_points(gaps: list[tuple[str, str | None]], concurrency: int, prefix: str) -> list[str]:
    """Up to ``concurrency`` points inside the gaps, each gap bisected toward its known
    lower end, where its keys are nearest (most buckets are dense after a known key)."""
    points: list[str] = []
    per_gap = max(1, concurrency // len(gaps))
    for low, high in gaps[:concurrency]:
        hi = high
        for _ in range(per_gap):
            at = split_point(low, hi, prefix=prefix)
            if at is None or not low < at:
                break
            points.append(at)
            hi = at
    return points[:concurrency]


def _cut(
    keys: list[str], gaps: list[tuple[str, str | None]], count: int, *, gap_weight: int
) -> list[KeyRange]:
    """Ranges cut at known keys, about equal in weight (a key weighs 1, a gap after a key
    ``gap_weight``); each range ends at a known key but the last, which holds the last."""
    if not keys:
        return [KeyRange()]
    extra = {low: gap_weight for low, _ in gaps}
    total = len(keys) + gap_weight * len(gaps)
    bounds: list[str] = []
    weight = 0
    for key in keys[:-1]:
        weight += 1 + extra.get(key, 0)
        if len(bounds) < count - 1 and weight * count >= total * (len(bounds) + 1):
            bounds.append(key)
    edges: list[str | None] = [None, *bounds, None]
    return [KeyRange(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]
