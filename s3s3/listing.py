"""Paged bucket listings as iterators of :class:`ObjectInfo`, in S3's key order.

Only one page (at most 1,000 entries) is held at a time, so memory does not grow with the
bucket. ListObjectsV2 by default; ListObjects (V1) for endpoints configured with
``list_version = 1``, for stores that page V2 wrongly.
"""

from __future__ import annotations

from typing import Iterator

from .endpoint import Endpoint, ObjectInfo, clean_etag
from .errors import EndpointError


def list_objects(endpoint: Endpoint, prefix: str = "", *,
                 page_size: int = 1000) -> Iterator[ObjectInfo]:
    """Every object under ``prefix``, in ascending UTF-8 byte order of keys."""
    if endpoint.cfg.list_version == 1:
        yield from _list_v1(endpoint, prefix, page_size)
    else:
        yield from _list_v2(endpoint, prefix, page_size)


def _entries(resp: dict) -> Iterator[ObjectInfo]:
    for item in resp.get("Contents") or ():
        yield ObjectInfo(key=item["Key"], size=int(item.get("Size") or 0),
                         etag=clean_etag(item.get("ETag")),
                         last_modified=item.get("LastModified"))


def _list_v2(endpoint: Endpoint, prefix: str, page_size: int) -> Iterator[ObjectInfo]:
    params = {"Prefix": prefix, "MaxKeys": page_size}
    last_token = None
    while True:
        resp = endpoint.call("ListObjectsV2", **params)
        yield from _entries(resp)
        token = resp.get("NextContinuationToken")
        if not resp.get("IsTruncated") or not token:
            return
        if token == last_token:
            raise EndpointError(f"the server repeated continuation token {token!r}; set "
                                "list_version = 1 for this endpoint", op="ListObjectsV2",
                                endpoint=endpoint.name, bucket=endpoint.bucket)
        last_token = token
        params["ContinuationToken"] = token


def _list_v1(endpoint: Endpoint, prefix: str, page_size: int) -> Iterator[ObjectInfo]:
    params = {"Prefix": prefix, "MaxKeys": page_size}
    while True:
        resp = endpoint.call("ListObjects", **params)
        contents = resp.get("Contents") or ()
        yield from _entries(resp)
        if not resp.get("IsTruncated") or not contents:
            return
        # NextMarker is only sent with a delimiter; the last key is the marker otherwise.
        params["Marker"] = resp.get("NextMarker") or contents[-1]["Key"]
