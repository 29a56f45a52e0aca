"""Serial paged bucket listings as iterators of :class:`ObjectInfo`, in S3's key order.

Only a few pages (at most 1,000 entries each) are held at a time, so memory does not grow
with the bucket. ListObjectsV2 by default; ListObjects (V1) for endpoints configured with
``list_version = 1``, for stores that page V2 wrongly (the store sends the one its
configuration names: :meth:`Store.list_page <s3s3.store.base.Store.list_page>`).

The listing owns its pages: each page is tried through ``s3s3.retry`` under the endpoint's
policy (``max_attempts``, ``retry_deadline``), and nothing below retries it, so a page
that keeps failing costs at most ``max_attempts`` requests.

:func:`list_objects_ahead` fetches pages in a background thread while the caller works on
the previous ones: the bucket job lists the source and every destination at once, and plans
while the next pages are on the wire.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator

from s3s3 import retry
from s3s3.errors import EndpointError
from s3s3.keyspace import KeyRange
from s3s3.model import ObjectInfo
from s3s3.store.base import Page, Store

#: How many fetched pages a background listing may hold before it waits for its reader.
PREFETCH_PAGES = 2


def list_objects(
    store: Store,
    prefix: str = "",
    *,
    page_size: int = 1000,
    policy: retry.Policy | None = None,
    key_range: KeyRange | None = None,
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix`` (and in ``key_range``), in ascending UTF-8 byte order
    of keys."""
    for page in list_pages(store, prefix, page_size=page_size, policy=policy, key_range=key_range):
        yield from page


def list_pages(
    store: Store,
    prefix: str = "",
    *,
    page_size: int = 1000,
    policy: retry.Policy | None = None,
    key_range: KeyRange | None = None,
) -> Iterator[list[ObjectInfo]]:
    """The listing one page at a time (V1 or V2 as the endpoint is configured), each page
    retried under ``policy`` (default: the endpoint's, :meth:`retry.Policy.for_endpoint`).

    With ``key_range``, the listing starts after its ``start_after`` (V2 StartAfter, V1
    Marker) and ends at its ``end``: the page that crosses it is cut there, and no further
    page is asked for."""
    policy = policy or retry.Policy.for_endpoint(store.cfg)
    v1 = store.cfg.list_version == 1
    what = describe(store, prefix, key_range)
    start_after = key_range.start_after if key_range is not None else None
    marker: str | None = None
    while True:
        page = fetch_page(
            store,
            prefix,
            page_size=page_size,
            policy=policy,
            what=what,
            marker=marker,
            start_after=start_after,
        )
        if key_range is not None and page.objects and key_range.past(page.objects[-1].key):
            yield [o for o in page.objects if not key_range.past(o.key)]
            return
        yield page.objects
        if v1:
            if not page.truncated or not page.objects:
                return
            # NextMarker is only sent with a delimiter; the last key is the marker otherwise.
            marker = page.next_marker or page.objects[-1].key
            continue
        token = page.next_marker
        if not page.truncated or not token:
            return
        if token == marker:
            raise EndpointError(
                f"the server repeated continuation token {token!r}; set "
                "list_version = 1 for this endpoint",
                op="ListObjectsV2",
                endpoint=store.name,
                bucket=store.bucket,
            )
        marker = token


def fetch_page(
    store: Store,
    prefix: str,
    *,
    page_size: int,
    policy: retry.Policy,
    what: str,
    marker: str | None = None,
    start_after: str | None = None,
    cancel: threading.Event | None = None,
) -> Page:
    """One page after ``marker`` (else after ``start_after``), tried under ``policy``; a set
    ``cancel`` ends a wait between tries."""
    return retry.call(
        functools.partial(
            store.list_page,
            prefix,
            page_size=page_size,
            marker=marker,
            start_after=start_after if marker is None else None,
        ),
        policy=policy,
        what=what,
        cancel=cancel,
    )


def describe(store: Store, prefix: str, key_range: KeyRange | None = None) -> str:
    """What a listing is, for log lines and errors (no secret: a bucket and a section)."""
    what = f"listing s3://{store.bucket}/{prefix} on [{store.name}]"
    if key_range is not None and (key_range.start_after, key_range.end) != (None, None):
        what += f" in {key_range}"
    return what


def list_objects_ahead(
    store: Store,
    prefix: str = "",
    *,
    page_size: int = 1000,
    depth: int = PREFETCH_PAGES,
    key_range: KeyRange | None = None,
) -> Iterator[ObjectInfo]:
    """:func:`list_objects`, with up to ``depth`` pages fetched ahead in a thread.

    An error met by the thread is raised here, at the point of the listing where it
    happened. Closing the iterator early stops the thread after its current request.
    """
    pages = list_pages(store, prefix, page_size=page_size, key_range=key_range)
    for page in prefetch(pages, depth=depth, name=f"list-{store.name}"):
        yield from page


_DONE = object()


def prefetch(
    pages: Iterator[list], *, depth: int = PREFETCH_PAGES, name: str = "prefetch"
) -> Iterator[list]:
    """Run ``pages`` in a daemon thread, ``depth`` items ahead of the consumer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    abandoned = threading.Event()

    def put(item) -> bool:
        while not abandoned.is_set():
            try:
                slots.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
        except BaseException as exc:  # handed to the consumer, who raises it
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if type(item) is tuple and item[0] is _DONE:
                if item[1] is not None:
                    raise item[1]
                return
            yield item
    finally:
        abandoned.set()
