"""Ranges of a bucket's key space, and where to split one: the ground that parallel listing
and the ranged reconcile share.

S3 lists keys in ascending UTF-8 byte order, which is the order of their code points, and a
listing can start after any string (ListObjectsV2 ``StartAfter``, V1 ``Marker``) whether or
not it names a key. So a range ``(start_after, end]`` is listed by starting after
``start_after`` and stopping past ``end``, and a range is split at any string between its
bounds: :func:`midpoint` picks one.

Pure functions over strings; no request is made here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_KEY_BYTES", "KeyRange", "midpoint"]

#: S3's limit on a key's length, in UTF-8 bytes: no split point is longer.
MAX_KEY_BYTES = 1024

_TOP = 0x110000  # one past the last code point
_ASCII_TOP = 0x80
_SURROGATES = range(0xD800, 0xE000)  # not characters: UTF-8 cannot carry them


@dataclass(frozen=True)
class KeyRange:
    """The keys ``k`` with ``start_after < k <= end``; ``None`` leaves that side open.

    Consecutive ranges share a bound (``(a, b]`` then ``(b, c]``), so a split loses no key
    and lists none twice."""

    start_after: str | None = None
    end: str | None = None

    def __post_init__(self) -> None:
        if self.start_after is not None and self.end is not None:
            if not _below(self.start_after, self.end):
                raise ValueError(f"empty key range {self}: its start is not below its end")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self.start_after is not None and not _below(self.start_after, key):
            return False
        return self.end is None or not _below(self.end, key)

    def past(self, key: str) -> bool:
        """Whether ``key`` lies beyond the range's end: a listing of the range stops there."""
        return self.end is not None and _below(self.end, key)

    def split(self, at: str) -> tuple[KeyRange, KeyRange]:
        """``(start_after, at]`` and ``(at, end]``; ``at`` must lie inside the range."""
        if at not in self or at == self.end:
            raise ValueError(f"cannot split {self} at {at!r}: not strictly inside it")
        return KeyRange(self.start_after, at), KeyRange(at, self.end)

    def __str__(self) -> str:
        lo = "" if self.start_after is None else repr(self.start_after)
        hi = "" if self.end is None else repr(self.end)
        return f"({lo}, {hi}]"


def _below(a: str, b: str) -> bool:
    """``a < b`` in S3's order. Python compares strings by code point, which is UTF-8 byte
    order for every string UTF-8 can encode."""
    return a < b


def midpoint(lo: str, hi: str | None, *, prefix: str = "") -> str | None:
    """A string strictly between ``lo`` and ``hi`` (``None``: no upper bound), near the middle
    of the code points where they first differ; ``None`` if there is none short enough to be
    a key.

    With ``prefix``, every key of interest starts with it (the listing's prefix, which ``lo``
    must start with too), so an open upper bound means "the last key under the prefix", not
    the end of the whole key space. An open bound is split within ASCII first, where most
    keys live, so the first split of ``("key-00999", None)`` lands at ``"u"``, not at a
    code point in the hundreds of thousands that no key reaches.
    """
    if not lo.startswith(prefix):
        raise ValueError(f"{lo!r} does not start with the prefix {prefix!r}")
    if hi is not None and not _below(lo, hi):
        raise ValueError(f"no string lies between {lo!r} and {hi!r}")
    if hi is not None and not hi.startswith(prefix):
        # The prefix's keys end before hi: the bound that matters is the prefix's own end.
        hi = None
    start = len(prefix)
    common = start
    if hi is not None:
        while common < len(lo) and common < len(hi) and lo[common] == hi[common]:
            common += 1
    result = _between(lo, hi, common)
    if result is None or len(result.encode("utf-8")) > MAX_KEY_BYTES:
        return None
    return result


def _between(lo: str, hi: str | None, at: int) -> str | None:
    """A string above ``lo`` and below ``hi``, which agree on ``lo[:at]``."""
    while True:
        a = ord(lo[at]) if at < len(lo) else 0
        if hi is not None and at < len(hi):
            b = ord(hi[at])
        else:
            b = _ASCII_TOP if a < _ASCII_TOP - 1 else _TOP
        c = _character((a + b) // 2, a, b) if b - a >= 2 else None
        if c is not None:
            return lo[:at] + chr(c)
        if at >= len(lo):
            # lo ends here and hi goes on with the lowest character: hi's next character
            # alone lies between, if hi goes on after it; else only NULs do, which no key is.
            return hi[: at + 1] if hi is not None and len(hi) > at + 1 else None
        # Adjacent characters (or only surrogates between): keep lo's, and go one place further with no upper bound
        # (anything that starts with lo[:at + 1] is already below hi).
        at += 1
        hi = None
        if at > MAX_KEY_BYTES:
            return None


def _character(c: int, a: int, b: int) -> int | None:
    """``c``, moved off the surrogates (no character) and kept strictly between ``a`` and
    ``b``; ``None`` when only surrogates lie between them."""
    if c not in _SURROGATES:
        return c
    if _SURROGATES.start - 1 > a:
        return _SURROGATES.start - 1
    if _SURROGATES.stop < b:
        return _SURROGATES.stop
    return None
