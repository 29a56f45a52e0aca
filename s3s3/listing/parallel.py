"""One store's listing fetched as several ranges of the key space at once, handed over in
key order: the bucket job's listing of a big bucket on a distant store.

A serial listing costs a round trip per page of 1,000 keys. Here the key space is cut with
``StartAfter`` (the S3P approach): once a range has listed a page, a worker with nothing to
do cuts it and lists the upper part from its first page; the lower part goes on from its
continuation token and stops at the cut. Where to cut is guessed from how the last page's
keys spread (:class:`Digits`: the keys read as numbers in the alphabet they use, so that
``data/000123`` counts in decimal) and corrected by what earlier cuts held: the range at
the top, open to the end, is cut a few pages above its last key and then twice as far each
time (a gallop, since how far the keys go is unknown), and a range with an end is cut in
the middle of what is left in it. A page that comes back empty, or past its range's end,
proves the rest of that range empty.

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

import bisect
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence
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
_PLACES = 4  # digits read past where a page's first and last keys part
_CARRY = 3  # places of the keys' common prefix a count may carry into


class Digits:
    """Keys read as numbers in the alphabet their page uses, to step a count of keys
    ahead of one (:meth:`ahead`) or to count the keys between two (:meth:`between`).

    Keys are seldom spread over every code point: ``data/000000123`` uses ten digits, a
    hash sixteen. So the digits are the characters a page's keys use past their common
    prefix, read from a few places before it (a count carries into the prefix where it is
    made of the same characters) to a few places after; the page's own span is how far a
    page of keys goes. Where the page's keys differ in length, "the key ends here" counts
    as a digit below the others. A guess: :class:`_Listing` corrects it by what its cuts
    find."""

    __slots__ = ("alphabet", "start", "places", "step", "_ends")

    def __init__(self, keys: Sequence[str], *, prefix: str = "") -> None:
        first, last = keys[0], keys[-1]
        common = _common_length(first, last)
        chars = {c for key in keys for c in key[common : common + _PLACES]}
        self.alphabet = "".join(sorted(chars)) or first[common - 1 : common] or "0"
        # Keys of one length (numbered, hashed) count in the alphabet exactly.
        self._ends = len({len(key) for key in keys}) > 1
        start = common
        while start > max(len(prefix), common - _CARRY) and first[start - 1] in chars:
            start -= 1
        self.start = start
        stop = common + _PLACES
        if not self._ends:
            stop = min(stop, len(first))  # no place past the end of every key
        self.places = max(1, stop - start)
        self.step = self.number(last) - self.number(first)

    def number(self, key: str) -> int:
        """``key``'s places as a number; a character outside the alphabet counts as the
        next one up (or the last), so the order of keys is kept, if not strictly."""
        base = len(self.alphabet)
        ends = self._ends
        value = 0
        for i in range(self.start, self.start + self.places):
            if i < len(key):
                digit = min(bisect.bisect_left(self.alphabet, key[i]), base - 1) + ends
            else:
                digit = 0
            value = value * (base + ends) + digit
        return value

    def text(self, value: int, head: str) -> str | None:
        """The key ``head[:start]`` followed by ``value``'s places, or None if ``value``
        does not fit them."""
        base = len(self.alphabet)
        ends = self._ends
        digits = []
        for _ in range(self.places):
            value, digit = divmod(value, base + ends)
            digits.append(digit)
        if value:
            return None
        chars = []
        for digit in reversed(digits):
            if ends and digit == 0:
                break  # a key that ends here
            chars.append(self.alphabet[digit - ends])
        return head[: self.start] + "".join(chars)

    def ahead(self, anchor: str, pages: float) -> str | None:
        """A point about ``pages`` pages of keys above ``anchor`` (None where the places
        cannot count that far)."""
        if self.step <= 0:
            return None
        return self.text(self.number(anchor) + max(1, int(pages * self.step)), anchor)

    def beyond(self, anchor: str) -> str | None:
        """The first point past every key that starts as ``anchor`` does up to the places
        counted: where keys the alphabet cannot count to begin (the next prefix of a
        bucket cut into ``data/0/``, ``data/1/``...)."""
        head = anchor[: self.start]
        while head and ord(head[-1]) >= 0x10FFFF:
            head = head[:-1]
        if not head:
            return None
        following = ord(head[-1]) + 1
        if 0xD800 <= following < 0xE000:
            following = 0xE000
        return head[:-1] + chr(following)

    def between(self, anchor: str, end: str) -> float:
        """About how many pages of keys lie between ``anchor`` and ``end``."""
        if self.step <= 0 or end[: self.start] != anchor[: self.start]:
            return math.inf if end > anchor else 0.0
        return max(0, self.number(end) - self.number(anchor)) / self.step


def pages_ahead(
    anchor: str, digits: Digits, end: str | None, pages: float, *, prefix: str = ""
) -> str | None:
    """:meth:`Digits.ahead`, kept a point worth starting a listing after: above
    ``anchor``, below ``end`` (None where it is not), under the prefix, of a key's length,
    and made of characters XML carries (servers echo StartAfter)."""
    return _usable(digits.ahead(anchor, pages), anchor, end, prefix)


def _usable(at: str | None, anchor: str, end: str | None, prefix: str) -> str | None:
    """``at``, if a listing can start after it in the range ``(anchor, end)``."""
    if at is None or not at.startswith(prefix) or not anchor < at:
        return None
    if (end is not None and not at < end) or len(at.encode("utf-8")) > MAX_KEY_BYTES:
        return None
    return at if _xml_safe(at, anchor) else None


def _common_length(a: str, b: str) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


@dataclass(eq=False)
class _Range:
    """A part of the listing: its keys, where its next page starts, its unread pages."""

    keys: KeyRange
    marker: str | None = None  # V2 continuation token or V1 marker; None: the first page
    last: str | None = None  # the last key listed so far (a split goes above it)
    # How the latest page listed here spreads its keys: where a cut leaves a few pages.
    digits: Digits | None = None
    cut_gain: float | None = None  # its end was set by a split, made with this gain
    cut_pages: float = 0.0  # to leave about this many pages here
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
        self.cut_pages = max(1, depth // 2)  # the first cut of the top leaves this many
        self.top_cuts = 0  # how often the top range was cut: each cut goes twice as far
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
        """Cut the range whose cut opens the most work: the new upper range, or None (no
        room, or nothing worth cutting).

        The range at the top, open to the end of the key space, is cut ``cut_pages`` above
        its last key, then twice as far each time (a gallop: how far the keys go is not
        known, and a fixed step would bring the workers there a few pages a round); a
        range with a known end is cut in the middle of what its keys' density says is
        left, if that is two pages or more. Called under the condition."""
        if self.failed or len(self.ranges) >= self.max_ranges:
            return None
        best: tuple[float, int, str, float, bool] | None = None
        for i, rng in enumerate(self.ranges):
            anchor = rng.last  # a range is split once it has listed a page of its own
            digits = rng.digits
            if rng.done or anchor is None or digits is None:
                continue
            left = math.inf if rng.keys.end is None else digits.between(anchor, rng.keys.end)
            if math.isinf(left):
                below = opened = self.cut_pages * 2.0 ** min(self.top_cuts, 40)
            else:
                left /= self.gain
                if left < 2:
                    continue
                below = opened = left / 2
            if best is not None and opened <= best[0]:
                continue
            at = pages_ahead(anchor, digits, rng.keys.end, below * self.gain, prefix=self.prefix)
            if at is None and math.isinf(left):
                # The page's alphabet cannot count that far: cut where the keys it can
                # count end (the next prefix may begin there), else bisect the code points.
                at = _usable(digits.beyond(anchor), anchor, rng.keys.end, self.prefix)
                if at is None:
                    at = split_point(anchor, rng.keys.end, prefix=self.prefix)
            if at is None or at not in rng.keys or at == rng.keys.end:
                continue
            best = (opened, i, at, below, math.isinf(left))
        if best is None:
            return None
        _, i, at, below, gallop = best
        rng = self.ranges[i]
        if gallop:
            self.top_cuts += 1
        lower, upper_keys = rng.keys.split(at)
        rng.keys = lower
        rng.cut_gain, rng.cut_pages, rng.listed_since_cut = self.gain, below, 0
        upper = _Range(upper_keys)
        self.ranges.insert(i + 1, upper)
        return upper

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
            self._learn(rng.cut_gain, rng.cut_pages, rng.listed_since_cut)
        if objects:
            rng.pages.append(objects)
            rng.last = objects[-1].key
            if len(objects) > 1:
                rng.digits = Digits([o.key for o in objects], prefix=self.prefix)
        if rng.done and not rng.pages:
            # Proven empty (or read through): nothing left to hand over, no room to hold.
            self.ranges.remove(rng)

    def _learn(self, cut_gain: float, pages: float, listed: int) -> None:
        """Correct the density guess by what a range cut with ``cut_gain`` to hold about
        ``pages`` pages held: keys are seldom spread evenly over the code points (digits,
        hex), so the guess is scaled by what the latest cut found (by ``_LEARN`` at most,
        so one odd range misleads little)."""
        found = max(listed, 1) / (max(pages, 1e-9) * self.page_size)
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
