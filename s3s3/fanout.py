"""Copy one key to several destinations over one read of the source: the fan-out.

With N destinations, :func:`copy_to_all` GETs the source once and feeds every destination
that needs the key from that one stream, so the source serves each byte once, not N times
(rclone and mc, one run per destination, read it N times).

- **Small objects** (up to ``transfer.SMALL_OBJECT_BYTES``) are read into memory once and
  written to each destination in turn, in the caller's thread, each PUT carrying the
  Content-MD5 the server checks.
- **Larger objects** stream through a :class:`SharedRead`: each destination writes from a
  reader of its own, in a thread of its own (the caller's thread serves the first), through
  the same verified single-PUT and multipart paths a lone copy takes
  (:func:`transfer.copy_from`). Whichever reader is ahead reads the next chunk from the
  source; the others take it from a buffer that keeps what the slowest has not read yet.
- **No destination waits for another.** The buffer holds at most the source's
  ``fanout_buffer`` bytes (64 MiB unless configured) plus one chunk. When the leading reader
  needs a chunk that would overflow it, the readers too far behind drop out
  (:class:`~s3s3.errors.LeftBehind`) and their copies are made again by a read of their own
  (:func:`transfer.copy_object`), logged once. A destination whose copy fails leaves at
  once, so it holds no memory while the others go on.

Comparing first (unless ``force``): every destination is HEADed, the source once if needed,
and only the destinations that differ take part. The result is one :class:`CopyResult` or one
exception per destination, in their order: the caller retries and counts each destination
on its own, as it does for lone copies. One try: nothing here retries, except the lone
read of a destination that left the shared one (it has not failed; it fell behind).

``bytes_read`` tells the source bytes read: the shared read's go to one destination's result,
so the results' sum is what the source served.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import threading
from collections.abc import Callable, Sequence

from s3s3.config import verifies_md5
from s3s3.errors import CopyCancelled, LeftBehind, SourceKeyMissing
from s3s3.model import CopyResult, ObjectInfo, Outcome
from s3s3.store.base import Body, Store
from s3s3.transfer import (
    READ_CHUNK_BYTES,
    SMALL_OBJECT_BYTES,
    copy_from,
    copy_object,
    is_identical,
)

log = logging.getLogger(__name__)

#: One destination's end of a fan-out: its result, or what was raised for it.
Result = CopyResult | BaseException


class SharedRead:
    """One source stream read by several readers, each at its own pace, within a window.

    Chunks are kept from the position of the slowest reader still in to that of the
    fastest; a chunk that would take the buffer past ``window`` bytes first drops the
    readers behind the new window. The source is read by whichever reader is at the front,
    under a lock of its own, so readers behind are served from the buffer meanwhile.
    """

    def __init__(self, body: Body, size: int, readers: int, *, window: int) -> None:
        self._body = body
        self._size = size
        self._window = max(window, 2 * READ_CHUNK_BYTES)
        self._lock = threading.Lock()
        self._source_lock = threading.Lock()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._base = 0  # offset of the first byte held
        self._top = 0  # offset after the last byte read from the source
        self._positions: list[int | None] = [0] * readers  # None: left
        self._failure: BaseException | None = None

    @property
    def bytes_read(self) -> int:
        """Bytes read from the source so far."""
        return self._top

    @property
    def window(self) -> int:
        return self._window

    def reader(self, index: int, *, key: str, src: str, dst: str) -> SharedReader:
        return SharedReader(self, index, key=key, src=src, dst=dst)

    def held_bytes(self) -> int:
        """Bytes held in the buffer now (what memory the shared read costs)."""
        with self._lock:
            return self._top - self._base

    def leave(self, index: int) -> None:
        """Reader ``index`` reads no more: what only it still needed is freed."""
        with self._lock:
            self._positions[index] = None
            self._trim()

    def read(self, index: int, amount: int) -> bytes | None:
        """Up to ``amount`` bytes for reader ``index``; None once it was dropped."""
        while True:
            with self._lock:
                pos = self._positions[index]
                if pos is None:
                    return None
                if pos < self._top:
                    return self._serve(index, pos, amount)
                if self._failure is not None:
                    raise self._failure
                if pos >= self._size:
                    return b""
            with self._source_lock:
                with self._lock:
                    pos = self._positions[index]
                    if pos is None or pos < self._top or self._failure is not None:
                        continue  # another reader read it meanwhile
                    self._make_room(index, min(READ_CHUNK_BYTES, self._size - self._top))
                try:
                    data = self._body.read(min(READ_CHUNK_BYTES, self._size - self._top))
                except BaseException as exc:
                    with self._lock:
                        self._failure = exc
                    raise
                with self._lock:
                    if not data:
                        return b""  # the reader sees a short source and says so
                    self._chunks.append(data)
                    self._top += len(data)

    def _serve(self, index: int, pos: int, amount: int) -> bytes:
        """Called with the lock held: up to ``amount`` bytes from ``pos`` out of the buffer."""
        offset = self._base
        for chunk in self._chunks:
            if offset + len(chunk) > pos:
                start = pos - offset
                data = chunk[start : start + amount] if start or amount < len(chunk) else chunk
                self._positions[index] = pos + len(data)
                if pos == self._base:
                    self._trim()
                return data
            offset += len(chunk)
        raise AssertionError(f"position {pos} not in [{self._base}, {self._top})")

    def _make_room(self, index: int, incoming: int) -> None:
        """Called with the lock held, before ``incoming`` bytes are added: drop the readers
        the window would no longer cover."""
        floor = self._top + incoming - self._window
        for other, pos in enumerate(self._positions):
            if other != index and pos is not None and pos < floor:
                self._positions[other] = None
        self._trim()

    def _trim(self) -> None:
        """Called with the lock held: free the chunks every reader still in has passed."""
        live = [p for p in self._positions if p is not None]
        floor = min(live) if live else self._top
        while self._chunks and self._base + len(self._chunks[0]) <= floor:
            self._base += len(self._chunks.popleft())


class SharedReader:
    """One destination's view of a :class:`SharedRead`: a body to copy from."""

    def __init__(self, shared: SharedRead, index: int, *, key: str, src: str, dst: str) -> None:
        self._shared = shared
        self._index = index
        self._copy = (key, src, dst)

    def read(self, amt: int | None = None) -> bytes:
        data = self._shared.read(self._index, READ_CHUNK_BYTES if not amt or amt < 0 else amt)
        if data is None:
            key, src, dst = self._copy
            raise LeftBehind(
                f"more than {self._shared.window} bytes behind the other destinations "
                "sharing the read",
                key=key,
                src=src,
                dst=dst,
            )
        return data

    def close(self) -> None:
        self._shared.leave(self._index)


def copy_to_all(
    src: Store,
    dsts: Sequence[Store],
    key: str,
    *,
    force: bool = False,
    verify_md5: bool = False,
    src_info: ObjectInfo | None = None,
    cancel: threading.Event | None = None,
    copier: Callable[..., CopyResult] = copy_object,
) -> list[Result]:
    """Copy ``key`` from ``src`` to every store of ``dsts`` over one GET of the source.

    Answers one result per destination, in order: a :class:`CopyResult`, or the exception
    its copy raised (never raised here, so one destination's failure leaves the others'
    results whole). ``force`` copies without comparing; ``src_info`` (from a listing)
    saves the source's HEAD. ``copier`` makes the lone copies (one destination, or one that
    left the shared read). Once ``cancel`` is set, every copy stops as a lone one would.
    """
    if len(dsts) == 1 or src.cfg.fanout_buffer_bytes == 0:
        return [
            _lone(copier, src, dst, key, force=force, src_info=src_info, cancel=cancel)
            for dst in dsts
        ]
    results: list[Result | None] = [None] * len(dsts)
    if not force:
        try:
            src_info = _compare(src, dsts, key, results, src_info, verify_md5=verify_md5)
        except BaseException as exc:  # the source's HEAD: it concerns every destination
            return [exc] * len(dsts)
        if src_info is None:
            return [CopyResult(key, d.name, Outcome.MISSING) for d in dsts]
    todo = [i for i, r in enumerate(results) if r is None]
    if len(todo) == 1:
        (i,) = todo
        results[i] = _lone(copier, src, dsts[i], key, force=True, src_info=src_info, cancel=cancel)
    elif todo:
        _shared_copy(
            src,
            [dsts[i] for i in todo],
            key,
            cancel=cancel,
            copier=copier,
            into=todo,
            results=results,
        )
    return [r if r is not None else _bug(key) for r in results]


def one_by_one(
    copier: Callable[..., CopyResult],
    src: Store,
    dsts: Sequence[Store],
    key: str,
    **kwargs,
) -> list[Result]:
    """``copier`` to each destination in turn, each reading the source itself: a fan-out's
    shape for a copier of one destination (tests give one to see every copy). A key the
    source no longer has is not asked for again."""
    results: list[Result] = []
    for dst in dsts:
        result = _lone(copier, src, dst, key, **kwargs)
        results.append(result)
        if isinstance(result, CopyResult) and result.outcome is Outcome.MISSING:
            results.extend(CopyResult(key, d.name, Outcome.MISSING) for d in dsts[len(results) :])
            break
    return results


def _bug(key: str) -> BaseException:
    return AssertionError(f"fan-out of {key!r} left a destination without a result")


def _lone(copier: Callable[..., CopyResult], src: Store, dst: Store, key: str, **kwargs) -> Result:
    try:
        return copier(src, dst, key, **kwargs)
    except Exception as exc:
        return exc


def _compare(
    src: Store,
    dsts: Sequence[Store],
    key: str,
    results: list[Result | None],
    src_info: ObjectInfo | None,
    *,
    verify_md5: bool,
) -> ObjectInfo | None:
    """HEAD each destination; fill ``results`` for those already identical (or failing).
    Answers the source's info (HEADed once, if needed), None when the key is gone."""
    heads: list[ObjectInfo | None] = []
    for i, dst in enumerate(dsts):
        try:
            heads.append(dst.head(key))
        except Exception as exc:
            results[i] = exc
            heads.append(None)
    if src_info is None:
        src_info = src.head(key)
        if src_info is None:
            return None
    for i, (dst, dst_info) in enumerate(zip(dsts, heads, strict=True)):
        if results[i] is not None or dst_info is None:
            continue
        try:
            same = is_identical(
                src,
                dst,
                key,
                src_info,
                dst_info,
                verify_md5=verifies_md5(src.cfg, dst.cfg, asked=verify_md5),
            )
        except Exception as exc:
            results[i] = exc
            continue
        if same:
            results[i] = CopyResult(
                key, dst.name, Outcome.SKIPPED, size=src_info.size, md5=src_info.known_md5
            )
    return src_info


def _shared_copy(
    src: Store,
    dsts: Sequence[Store],
    key: str,
    *,
    cancel: threading.Event | None,
    copier: Callable[..., CopyResult],
    into: Sequence[int],
    results: list[Result | None],
) -> None:
    """One GET for every store of ``dsts``; each one's result goes to ``results[into[i]]``."""
    try:
        obj = src.get(key)
    except SourceKeyMissing:
        for i, dst in zip(into, dsts, strict=True):
            results[i] = CopyResult(key, dst.name, Outcome.MISSING)
        return
    except Exception as exc:
        for i in into:
            results[i] = exc
        return
    with obj:
        info = obj.info
        if info.size <= SMALL_OBJECT_BYTES:
            _copy_small(src, dsts, key, obj.body, info, obj.headers, into, results, cancel)
            return
        shared = SharedRead(obj.body, info.size, len(dsts), window=src.cfg.fanout_buffer_bytes)
        shared_results: set[int] = set()

        def one(n: int) -> None:
            dst = dsts[n]
            reader = shared.reader(n, key=key, src=src.name, dst=dst.name)
            try:
                copied = copy_from(src, dst, key, key, reader, info, obj.headers, cancel=cancel)
                result: Result = dataclasses.replace(copied, bytes_read=0)
                shared_results.add(into[n])
            except LeftBehind:
                log.info(
                    "[%s] fell more than %d bytes behind the other destinations of %r: "
                    "it reads the source on its own",
                    dst.name,
                    src.cfg.fanout_buffer_bytes,
                    key,
                )
                result = _lone(copier, src, dst, key, force=True, src_info=info, cancel=cancel)
            except Exception as exc:
                result = _as_cancelled(exc, cancel, key, src, dst)
            finally:
                reader.close()
            results[into[n]] = result

        threads = [
            threading.Thread(target=one, args=(n,), name=f"s3s3-fanout-{n}", daemon=True)
            for n in range(1, len(dsts))
        ]
        for thread in threads:
            thread.start()
        one(0)
        for thread in threads:
            thread.join()
        _credit_read(results, sorted(shared_results), shared.bytes_read)


def _copy_small(
    src: Store,
    dsts: Sequence[Store],
    key: str,
    body: Body,
    info: ObjectInfo,
    headers,
    into: Sequence[int],
    results: list[Result | None],
    cancel: threading.Event | None,
) -> None:
    try:
        data = body.read()
    except Exception as exc:
        for i in into:
            results[i] = exc
        return
    for n, dst in enumerate(dsts):
        try:
            result: Result = copy_from(
                src, dst, key, key, _Bytes(data), info, headers, cancel=cancel
            )
        except Exception as exc:
            result = _as_cancelled(exc, cancel, key, src, dst)
        if isinstance(result, CopyResult):
            result = dataclasses.replace(result, bytes_read=0)
        results[into[n]] = result
    _credit_read(results, into, len(data))


def _credit_read(results: list[Result | None], shared: Sequence[int], read: int) -> None:
    """The shared read's bytes go to the first destination copied from it (none, when
    every copy from it failed: the bytes were read, but no copy came of them)."""
    for i in shared:
        result = results[i]
        if isinstance(result, CopyResult) and result.outcome is Outcome.COPIED:
            results[i] = dataclasses.replace(result, bytes_read=read)
            return


def _as_cancelled(
    exc: Exception, cancel: threading.Event | None, key: str, src: Store, dst: Store
) -> BaseException:
    if cancel is not None and cancel.is_set() and not isinstance(exc, CopyCancelled):
        cancelled = CopyCancelled(
            "cancelled while copying; nothing was written", key=key, src=src.name, dst=dst.name
        )
        cancelled.__cause__ = exc
        return cancelled
    return exc


class _Bytes(io.BytesIO):
    """A small object's bytes as a body each destination reads from the start."""
