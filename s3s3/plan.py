"""Deciding what to copy, without I/O.

:func:`decide` is the copy strategy for one key seen on both sides. Its truth table, read
top to bottom, first match wins (``md5`` is the ETag when it is an md5, else the
``s3s3-md5`` metadata s3s3 writes on multipart uploads, else unknown):

    destination     sizes    md5s (src, dst)      size_only  verify_md5  verdict
    -----------     -----    ---------------      ---------  ----------  -------
    absent          -        -                    -          -           COPY
    present         differ   -                    -          -           COPY
    present         equal    -                    yes        -           SKIP
    present         equal    both known, equal    no         -           SKIP
    present         equal    both known, differ   no         -           COPY
    present         equal    ETags equal*         no         -           SKIP
    present         equal    a side unknown       no         yes         HASH (read, compare)
    present         equal    a side unknown       no         no          SKIP if dst is not
                                                                         older than src, else
                                                                         COPY (size + mtime)

    * identical non-md5 ETags: the same multipart layout of the same bytes.

The size + modification time fallback is used only where no md5 exists on one side; it is
the weakest test and the README says so. A listing never carries the ``s3s3-md5``
metadata, so from listings alone a multipart object's md5 is unknown; with ``verify_md5``
the bucket job HEADs such objects for that metadata before it reads any bytes.

:func:`merge` joins the key-sorted source listing with every destination listing in one
pass, holding one entry per listing: *source only*, *destination only* and *both* come out
of it row by row, in key order, whatever the buckets' sizes. S3 orders keys by their UTF-8
bytes. UTF-8 preserves code point order and Python compares ``str`` by code point, so
comparing the keys as ``str`` is comparing their UTF-8 bytes, without encoding millions of
keys (the tests pin this, surrogates and astral characters included). It is *not* the order
of UTF-16 code units (Java, JavaScript: U+1F600 sorts before U+FFFF there): a store that
lists in any other order makes :func:`merge` raise :class:`ListingOrderError` instead of
planning copies and deletions from a misread listing.

:func:`plan_keys` adds the include/exclude filter and the per-destination
:class:`Action`. Nothing here does I/O; the tests feed it plain lists.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from s3s3.errors import ListingOrderError
from s3s3.model import ObjectInfo, etag_is_md5


class Verdict(enum.Enum):
    COPY = "copy"
    SKIP = "skip"
    HASH = "hash"  # compute the md5 of the side(s) lacking one, then compare


def decide(
    src: ObjectInfo, dst: ObjectInfo | None, *, size_only: bool = False, verify_md5: bool = False
) -> Verdict:
    """Whether ``dst`` must be (re)written from ``src``; see the module's truth table."""
    if dst is None or src.size != dst.size:
        return Verdict.COPY
    if size_only:
        return Verdict.SKIP
    if src.etag == dst.etag and etag_is_md5(src.etag):
        return Verdict.SKIP  # the common case, answered without the md5 properties
    src_md5, dst_md5 = src.known_md5, dst.known_md5
    if src_md5 and dst_md5:
        return Verdict.SKIP if src_md5 == dst_md5 else Verdict.COPY
    if src.etag and src.etag == dst.etag:
        return Verdict.SKIP
    if verify_md5:
        return Verdict.HASH
    if src.last_modified and dst.last_modified and dst.last_modified >= src.last_modified:
        return Verdict.SKIP
    return Verdict.COPY


# --------------------------------------------------------------------------- merge


class Row(NamedTuple):
    """One key of the merged listings: its entry in the source and in each destination."""

    key: str
    src: ObjectInfo | None
    dsts: tuple[ObjectInfo | None, ...]


_END = None  # an exhausted listing's head


def _advance(it: Iterator[ObjectInfo], side: int, previous: str) -> ObjectInfo | None:
    """The next entry of a listing, checking that its key is above ``previous``."""
    info = next(it, _END)
    if info is not _END and info.key <= previous:
        raise ListingOrderError(side, previous, info.key)
    return info


def merge(
    source: Iterable[ObjectInfo], destinations: Sequence[Iterable[ObjectInfo]]
) -> Iterator[Row]:
    """Merge key-sorted listings into one :class:`Row` per key, in ascending key order.

    Holds one entry per listing. Raises :class:`ListingOrderError` as soon as a listing
    is out of order or repeats a key.
    """
    if len(destinations) == 1:
        return _merge_one(iter(source), iter(destinations[0]))
    return _merge_many([iter(source)] + [iter(d) for d in destinations])


def _merge_one(src_it: Iterator[ObjectInfo], dst_it: Iterator[ObjectInfo]) -> Iterator[Row]:
    # The common case, written out: a few comparisons per key.
    src = _advance(src_it, 0, "")
    dst = _advance(dst_it, 1, "")
    while src is not _END and dst is not _END:
        skey, dkey = src.key, dst.key
        if skey == dkey:
            yield Row(skey, src, (dst,))
            src = _advance(src_it, 0, skey)
            dst = _advance(dst_it, 1, dkey)
        elif skey < dkey:
            yield Row(skey, src, (None,))
            src = _advance(src_it, 0, skey)
        else:
            yield Row(dkey, None, (dst,))
            dst = _advance(dst_it, 1, dkey)
    while src is not _END:
        yield Row(src.key, src, (None,))
        src = _advance(src_it, 0, src.key)
    while dst is not _END:
        yield Row(dst.key, None, (dst,))
        dst = _advance(dst_it, 1, dst.key)


def _merge_many(its: list[Iterator[ObjectInfo]]) -> Iterator[Row]:
    heads = [_advance(it, side, "") for side, it in enumerate(its)]
    sides = range(len(its))
    while True:
        live = [h.key for h in heads if h is not _END]
        if not live:
            return
        key = min(live)
        entries: list[ObjectInfo | None] = []
        for side in sides:
            head = heads[side]
            if head is not _END and head.key == key:
                entries.append(head)
                heads[side] = _advance(its[side], side, key)
            else:
                entries.append(None)
        yield Row(key, entries[0], tuple(entries[1:]))


# --------------------------------------------------------------------------- filters


class KeyFilter:
    """Include/exclude glob patterns, matched with :func:`fnmatch.fnmatchcase` on the key.

    A key is kept when it matches at least one include pattern (or there are none) and no
    exclude pattern. ``*`` also matches ``/``: ``logs/*`` covers every key under ``logs/``.
    Keys that are filtered out are neither copied nor deleted.
    """

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        self._include = _any_of(self.include)
        self._exclude = _any_of(self.exclude)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def __call__(self, key: str) -> bool:
        if self._include is not None and self._include(key) is None:
            return False
        return self._exclude is None or self._exclude(key) is None

    def __repr__(self) -> str:
        return f"KeyFilter(include={self.include!r}, exclude={self.exclude!r})"


def _any_of(patterns: tuple[str, ...]):
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


# --------------------------------------------------------------------------- actions


class Action(enum.Enum):
    """What to do with one key at one destination."""

    COPY = "copy"  # absent, or differs
    HASH = "hash"  # read the md5s that are not known, copy if they differ
    SKIP = "skip"  # already identical
    DELETE = "delete"  # only at the destination, and deletion was asked for
    KEEP = "keep"  # only at the destination, kept


@dataclass(frozen=True)
class Strategy:
    """How one destination is compared with the source: :func:`decide`'s two switches."""

    size_only: bool = False
    verify_md5: bool = False

    def action(
        self, src: ObjectInfo | None, dst: ObjectInfo | None, *, delete: bool
    ) -> Action | None:
        """The action for one key; None when the key is on neither side."""
        if src is None:
            if dst is None:
                return None
            return Action.DELETE if delete else Action.KEEP
        if dst is None:
            return Action.COPY
        return _ACTION_OF[decide(src, dst, size_only=self.size_only, verify_md5=self.verify_md5)]


_ACTION_OF = {Verdict.COPY: Action.COPY, Verdict.SKIP: Action.SKIP, Verdict.HASH: Action.HASH}


class KeyPlan(NamedTuple):
    """One key and what to do with it at each destination (None: not there, not asked)."""

    key: str
    src: ObjectInfo | None
    dsts: tuple[ObjectInfo | None, ...]
    actions: tuple[Action | None, ...]


def plan_keys(
    source: Iterable[ObjectInfo],
    destinations: Sequence[Iterable[ObjectInfo]],
    *,
    strategies: Sequence[Strategy],
    delete: bool = False,
    key_filter: KeyFilter | None = None,
) -> Generator[KeyPlan, None, None]:
    """Merge the listings, drop filtered keys, and decide each key at each destination.

    A generator, so that a caller that stops early can close it, and with it the listings
    it was reading (the bucket job does: their read-ahead threads stop).
    """
    if len(strategies) != len(destinations):
        raise ValueError(f"{len(destinations)} destinations but {len(strategies)} strategies")
    if key_filter:
        source = filter(lambda info: key_filter(info.key), source)
        destinations = [filter(lambda info: key_filter(info.key), d) for d in destinations]
    rows = merge(source, destinations)
    if len(strategies) == 1:
        action = strategies[0].action
        for key, src, dsts in rows:
            yield KeyPlan(key, src, dsts, (action(src, dsts[0], delete=delete),))
        return
    pairs = list(enumerate(strategies))
    for key, src, dsts in rows:
        yield KeyPlan(
            key, src, dsts, tuple([s.action(src, dsts[i], delete=delete) for i, s in pairs])
        )


def reason(action: Action, src: ObjectInfo | None, dst: ObjectInfo | None) -> str:
    """Why ``action`` was chosen, in a few words, for the dry-run plan."""
    if action is Action.DELETE or action is Action.KEEP:
        return "not in the source"
    if src is None:
        return ""
    if dst is None:
        return f"new, {src.size} bytes"
    if action is Action.HASH:
        return "no md5 on one side; compare by reading"
    if action is Action.SKIP:
        return "identical"
    if src.size != dst.size:
        return f"size differs src({src.size}) vs dst({dst.size})"
    if src.known_md5 and dst.known_md5:
        return f"md5 differs src({src.known_md5}) vs dst({dst.known_md5})"
    return "destination older than source (size + mtime)"
