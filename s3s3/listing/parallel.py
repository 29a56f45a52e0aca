"""One store's listing fetched as several ranges of the key space at once, handed over in
key order: the bucket job's listing of a big bucket on a distant store.

A serial listing costs a round trip per page of 1,000 keys. Here the key space is cut with
``StartAfter`` (the S3P approach): once a range has listed a page, a worker with nothing to
do cuts it about ``depth / 2`` pages above its last key (:func:`pages_ahead`: the page's
keys tell how densely keys lie, and what each earlier cut held corrects the guess, since
keys are seldom spread evenly over the code points) and lists the upper part from its first
page; the lower part goes on from its continuation token and stops at the cut. A page that
comes back empty, or past its range's end, proves the rest of that range empty. The lowest
range is cut first, so the workers gather where the reader is.

Memory stays bounded whatever the bucket: each range buffers at most ``depth`` pages and at
most ``max_ranges`` ranges are open ahead of the reader, so a range far ahead waits (it is
not asked for more pages) until the reader gets there. The first request is the serial
listing's first request, and nothing is cut before a page comes back truncated: a bucket
of one page costs one request.

Each page is tried under the endpoint's retry policy, as in :func:`serial.list_pages`. A
failure is raised to the reader where it happened in key order: the ranges below it are
still listed and handed over first, the ranges above it are dropped and their workers stop.
Closing the iterator stops every worker after its current request (a retry's wait is cut
short).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from s3s3 import retry
from s3s3.errors import EndpointError
from s3s3.keyspace import MAX_KEY_BYTES, KeyRange, midpoint
from s3s3.listing.serial import describe, fetch_page
from s3s3.model import ObjectInfo
from s3s3.store.base import Page, Store

#: Pages each range may hold before its reader takes them; also about how many pages a
#: range split off ahead of the reader is cut to hold.
RANGE_DEPTH = 6
#: Ranges open ahead of the reader, per worker.
RANGES_PER_WORKER = 2
#: Tries at moving a split point off a character that XML cannot carry.
_NUDGES = 8


def split_point(lo: str, hi: str | None, *, prefix: str = "") -> str | None:
    """:func:`keyspace.midpoint`, moved up toward ``hi`` while it ends with a character
    that XML 1.0 cannot carry (a control character, U+FFFE, U+FFFF): servers echo
    ``StartAfter`` in their answer (RGW, moto), which would then be unreadable. None when
    no such point is found."""
    at = midpoint(lo, hi, prefix=prefix)
    for _ in range(_NUDGES):
        if at is None or _xml_safe(at, lo):
            return at
        at = midpoint(at, hi, prefix=prefix)
    return None


def _xml_safe(point: str, lo: str) -> bool:
    """Whether the characters ``point`` adds to what it shares with ``lo`` (a key, which
    the server lists anyway) all go into XML."""
    common = 0
    while common < len(point) and common < len(lo) and point[common] == lo[common]:
        common += 1
    return all(0x20 <= ord(c) <= 0xFFFD or ord(c) >= 0x10000 for c in point[common:])


_LEARN = 16.0  # the most one cut may change the guess by
_BASE = 0x110000  # keys as numbers: one digit per code point, in key order
_PLACES = 3  # digits past where a page's first and last keys part (63 bits of precision)


def pages_ahead(
    anchor: str, sample: tuple[str, str], end: str | None, pages: float, *, prefix: str = ""
) -> str | None:
    """A point about ``pages`` pages of keys above ``anchor``, if the keys lie as densely
    as between the two keys of ``sample`` (the first and last of one page); None when the
    range ending at ``end`` (or the prefix) would end before it.

    The keys are read as numbers with a digit per code point, as far as a few places past
    where the sample's keys part, and the page's span is stepped ``pages`` times; a point
    that is no key (a surrogate, a character XML cannot carry) is moved up to one.
    """
    first, last = sample
    places = _common_length(first, last) + _PLACES
    step = _number(last, places) - _number(first, places)
    if step <= 0:
        return None
    target = _number(anchor, places) + max(1, int(pages * step))
    if target >= _BASE**places or (end is not None and target >= _number(end, places)):
        return None
    at = _text(target, places)
    if not at.startswith(prefix) or not anchor < at or (end is not None and not at < end):
        return None
    if len(at.encode("utf-8")) > MAX_KEY_BYTES:
        return None
    return at


def _common_length(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def _number(key: str, places: int) -> int:
    value = 0
    for i in range(places):
        value = value * _BASE + (ord(key[i]) if i < len(key) else 0)
    return value


def _text(value: int, places: int) -> str:
    digits = []
    for _ in range(places):
        value, digit = divmod(value, _BASE)
        digits.append(digit)
    while digits and digits[0] == 0:  # the lowest places first: trailing zeros go
        digits.pop(0)
    chars = []
    for digit in reversed(digits):
        if digit < 0x20:
            digit = 0x20  # up, off the control characters: still a point, a bit higher
        elif 0xD800 <= digit < 0xE000 or digit in (0xFFFE, 0xFFFF):
            digit = 0xE000 if digit < 0xE000 else 0x10000
        chars.append(chr(digit))
    return "".join(chars)


@dataclass(eq=False)
class _Range:
    """A part of the listing: its keys, where its next page starts, its unread pages."""

    keys: KeyRange
    marker: str | None = None  # V2 continuation token or V1 marker; None: the first page
    last: str | None = None  # the last key listed so far (a split goes above it)
    # The first and last keys of the latest page listed here: how densely the keys lie, to
    # guess where a split leaves a few pages below it.
    sample: tuple[str, str] | None = None
    cut_gain: float | None = None  # its end was set by a split, made with this gain
    listed_since_cut: int = 0  # keys listed since then: how good the guess was
    pages: deque[list[ObjectInfo]] = field(default_factory=deque)
    busy: bool = False  # a worker is fetching its next page
    done: bool = False
    dropped: bool = False  # cut off by a failure below it, or by the reader closing
    error: BaseException | None = None


def list_objects_parallel(
    store: Store,
    prefix: str = "",
    *,
    concurrency: int,
    page_size: int = 1000,
    depth: int = RANGE_DEPTH,
    max_ranges: int | None = None,
    policy: retry.Policy | None = None,
    key_range: KeyRange | None = None,
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix`` (and in ``key_range``) in key order, listed by up to
    ``concurrency`` requests at once (see the module doc).

    At most ``max_ranges`` (default ``RANGES_PER_WORKER`` per worker) ranges of ``depth``
    pages each are held ahead of the reader.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    listing = _Listing(
        store,
        prefix,
        concurrency=concurrency,
        page_size=page_size,
        depth=depth,
        max_ranges=max(2, max_ranges or RANGES_PER_WORKER * concurrency),
        policy=policy or retry.Policy.for_endpoint(store.cfg),
        key_range=key_range or KeyRange(),
    )
    return listing.objects()


class _Listing:
    """The ranges of one listing, its workers and its reader, under one condition."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        concurrency: int,
        page_size: int,
        depth: int,
        max_ranges: int,
        policy: retry.Policy,
        key_range: KeyRange,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.concurrency = concurrency
        self.page_size = page_size
        self.depth = depth
        self.max_ranges = max_ranges
        self.policy = policy
        self.v1 = store.cfg.list_version == 1
        self.what = describe(store, prefix, key_range)
        self.cond = threading.Condition()
        self.ranges: list[_Range] = [_Range(key_range)]
        self.failed = False  # no split after a failure: the listing ends there
        self.gain = 1.0  # the density guess's correction, learnt from the cuts (_learn)
        self.cut_pages = max(1, depth // 2)  # a cut leaves about this many pages below it
        self.closed = threading.Event()  # the reader is gone; cuts a retry's wait short

    # ---------------------------------------------------------------- reader

    def objects(self) -> Iterator[ObjectInfo]:
        threads = [
            threading.Thread(target=self._work, name=f"list-{self.store.name}-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            while True:
                page = self._next_page()
                if page is None:
                    return
                yield from page
        finally:
            with self.cond:
                self.closed.set()
                for rng in self.ranges:
                    rng.dropped = True
                self.ranges.clear()
                self.cond.notify_all()

    def _next_page(self) -> list[ObjectInfo] | None:
        """The lowest range's next page, waiting for it; None at the end of the listing."""
        with self.cond:
            while True:
                if not self.ranges:
                    return None
                first = self.ranges[0]
                if first.pages:
                    page = first.pages.popleft()
                    self.cond.notify_all()  # its worker may go on
                    return page
                if first.done:
                    if first.error is not None:
                        raise first.error
                    del self.ranges[0]
                    self.cond.notify_all()  # room for a split
                    continue
                self.cond.wait()

    # ---------------------------------------------------------------- workers

    def _work(self) -> None:
        while True:
            with self.cond:
                rng = self._take_work()
                if rng is None:
                    return
                rng.busy = True
                marker, start_after = rng.marker, rng.keys.start_after
            try:
                page = fetch_page(
                    self.store,
                    self.prefix,
                    page_size=self.page_size,
                    policy=self.policy,
                    what=self.what,
                    marker=marker,
                    start_after=start_after,
                    cancel=self.closed,
                )
                with self.cond:
                    rng.busy = False
                    if not rng.dropped:
                        self._add_page(rng, page)
                    self.cond.notify_all()
            except BaseException as exc:  # handed to the reader, who raises it
                with self.cond:
                    rng.busy = False
                    if not rng.dropped:
                        self._fail(rng, exc)
                    self.cond.notify_all()

    def _take_work(self) -> _Range | None:
        """The lowest range that wants its next page, else a new range split off the
        lowest one that can be split; waits while there is neither. None when the listing
        is over for the workers. Called under the condition."""
        while True:
            if self.closed.is_set():
                return None
            for rng in self.ranges:
                if not rng.done and not rng.busy and len(rng.pages) < self.depth:
                    return rng
            if all(rng.done for rng in self.ranges):
                return None
            upper = self._split()
            if upper is not None:
                return upper
            self.cond.wait()

    def _split(self) -> _Range | None:
        """Split the lowest range that is not done and holds more than ``depth`` pages
        still to list (by its keys' density so far), about ``depth`` pages above where its
        listing stands: the new upper range, or None (no room, or nothing to split)."""
        if self.failed or len(self.ranges) >= self.max_ranges:
            return None
        for i, rng in enumerate(self.ranges):
            anchor = rng.last  # a range is split once it has listed a page of its own
            if rng.done or anchor is None or rng.sample is None:
                continue
            at = pages_ahead(
                anchor, rng.sample, rng.keys.end, self.cut_pages * self.gain, prefix=self.prefix
            )
            if at is None or at not in rng.keys or at == rng.keys.end:
                continue
            lower, upper_keys = rng.keys.split(at)
            rng.keys = lower
            rng.cut_gain, rng.listed_since_cut = self.gain, 0
            upper = _Range(upper_keys)
            self.ranges.insert(i + 1, upper)
            return upper
        return None

    def _add_page(self, rng: _Range, page: Page) -> None:
        """Keep ``page`` for the reader and note where ``rng`` goes on, or that it is done.
        Called under the condition."""
        objects = page.objects
        if objects and rng.keys.past(objects[-1].key):
            objects = [o for o in objects if not rng.keys.past(o.key)]
            rng.done = True
        elif self.v1:
            rng.done = not page.truncated or not objects
            if not rng.done:
                # NextMarker is only sent with a delimiter; the last key is the marker otherwise.
                rng.marker = page.next_marker or objects[-1].key
        else:
            token = page.next_marker
            rng.done = not page.truncated or not token
            if not rng.done and token == rng.marker:
                self._fail(
                    rng,
                    EndpointError(
                        f"the server repeated continuation token {token!r}; set "
                        "list_version = 1 for this endpoint",
                        op="ListObjectsV2",
                        endpoint=self.store.name,
                        bucket=self.store.bucket,
                    ),
                )
                return
            rng.marker = token
        rng.listed_since_cut += len(objects)
        if rng.done and rng.cut_gain is not None:
            self._learn(rng.cut_gain, rng.listed_since_cut)
        if objects:
            rng.pages.append(objects)
            rng.last = objects[-1].key
            if len(objects) > 1:
                rng.sample = (objects[0].key, objects[-1].key)
        if rng.done and not rng.pages:
            # Proven empty (or read through): nothing left to hand over, no room to hold.
            self.ranges.remove(rng)

    def _learn(self, cut_gain: float, listed: int) -> None:
        """Correct the density guess by what a range cut with ``cut_gain`` held: keys are
        seldom spread evenly over the code points (digits, hex), so the guess is scaled by
        what the latest cut found (by ``_LEARN`` at most, so one odd range misleads
        little)."""
        found = max(listed, 1) / (self.cut_pages * self.page_size)
        self.gain = min(max(cut_gain / min(max(found, 1 / _LEARN), _LEARN), 1e-9), 1e30)

    def _fail(self, rng: _Range, exc: BaseException) -> None:
        """End the listing at ``rng``: the reader gets what lies below, then ``exc``; the
        ranges above are dropped (their workers stop). Called under the condition."""
        rng.error = exc
        rng.done = True
        self.failed = True
        i = self.ranges.index(rng)
        for above in self.ranges[i + 1 :]:
            above.dropped = True
        del self.ranges[i + 1 :]
