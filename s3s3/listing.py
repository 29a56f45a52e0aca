"""Paged bucket listings as iterators of :class:`ObjectInfo`, in S3's key order.

Only a few pages (at most 1,000 entries each) are held at a time, so memory does not grow
with the bucket. ListObjectsV2 by default; ListObjects (V1) for endpoints configured with
``list_version = 1``, for stores that page V2 wrongly.

:func:`list_objects_ahead` fetches pages in a background thread while the caller works on
the previous ones: the bucket job lists the source and every destination at once, and plans
while the next pages are on the wire.

Pages are fetched with :meth:`Endpoint.fast_call`: through :mod:`s3s3.store.lean`, which parses
them with ElementTree at a fifth of botocore's CPU, unless the endpoint says
``data_path = botocore``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from s3s3.errors import EndpointError
from s3s3.model import ObjectInfo, clean_etag
from s3s3.store.endpoint import Endpoint

#: How many fetched pages a background listing may hold before it waits for its reader.
PREFETCH_PAGES = 2


def list_objects(
    endpoint: Endpoint, prefix: str = "", *, page_size: int = 1000
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix``, in ascending UTF-8 byte order of keys."""
    for page in list_pages(endpoint, prefix, page_size=page_size):
        yield from page


def list_pages(
    endpoint: Endpoint, prefix: str = "", *, page_size: int = 1000
) -> Iterator[list[ObjectInfo]]:
    """The listing one page at a time (V1 or V2 as the endpoint is configured)."""
    if endpoint.cfg.list_version == 1:
        return _list_v1(endpoint, prefix, page_size)
    return _list_v2(endpoint, prefix, page_size)


def list_objects_ahead(
    endpoint: Endpoint, prefix: str = "", *, page_size: int = 1000, depth: int = PREFETCH_PAGES
) -> Iterator[ObjectInfo]:
    """:func:`list_objects`, with up to ``depth`` pages fetched ahead in a thread.

    An error met by the thread is raised here, at the point of the listing where it
    happened. Closing the iterator early stops the thread after its current request.
    """
    for page in prefetch(
        list_pages(endpoint, prefix, page_size=page_size), depth=depth, name=f"list-{endpoint.name}"
    ):
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


def _entries(resp: dict) -> list[ObjectInfo]:
    return [
        ObjectInfo(
            key=item["Key"],
            size=int(item.get("Size") or 0),
            etag=clean_etag(item.get("ETag")),
            last_modified=item.get("LastModified"),
        )
        for item in resp.get("Contents") or ()
    ]


def _list_v2(endpoint: Endpoint, prefix: str, page_size: int) -> Iterator[list[ObjectInfo]]:
    params = {"Prefix": prefix, "MaxKeys": page_size}
    last_token = None
    while True:
        resp = endpoint.fast_call("ListObjectsV2", **params)
        yield _entries(resp)
        token = resp.get("NextContinuationToken")
        if not resp.get("IsTruncated") or not token:
            return
        if token == last_token:
            raise EndpointError(
                f"the server repeated continuation token {token!r}; set "
                "list_version = 1 for this endpoint",
                op="ListObjectsV2",
                endpoint=endpoint.name,
                bucket=endpoint.bucket,
            )
        last_token = token
        params["ContinuationToken"] = token


def _list_v1(endpoint: Endpoint, prefix: str, page_size: int) -> Iterator[list[ObjectInfo]]:
    params = {"Prefix": prefix, "MaxKeys": page_size}
    while True:
        resp = endpoint.fast_call("ListObjects", **params)
        contents = resp.get("Contents") or ()
        yield _entries(resp)
        if not resp.get("IsTruncated") or not contents:
            return
        # NextMarker is only sent with a delimiter; the last key is the marker otherwise.
        params["Marker"] = resp.get("NextMarker") or contents[-1]["Key"]
