"""The store room: S3 buckets behind one :class:`Store` protocol that speaks model types.

    base.py       the Store protocol and the values it speaks (ObjectStream, ContentHeaders,
                  Page, UploadPage, VersionPage, Part); the upload-listing pager
    s3errors.py   the one table from an S3 error answer to the error tree
    boto.py       the boto3 store: client, config, TLS trust, Ceph/Swift compatibility
                  handlers, botocore errors mapped into the tree
    lean.py       the lean store: pooled http.client, wire format, XML listings
    signing.py    SigV4 and SigV2 signatures for the lean store
    endpoint.py   :class:`~s3s3.store.endpoint.Endpoint`, the Store callers use: per
                  operation the lean store or the boto3 store, decided once
    pacing.py     what every request and GET body of an endpoint goes through: the
                  process's bwlimit, the endpoint's tpslimit, and its concurrency, halved
                  on SlowDown and recovering

A store tries every operation once and raises an error of the tree (``s3s3.errors``)
whose ``retryable`` says whether trying again may help; the owner of the operation
retries it through ``s3s3.retry``. Nothing here hands botocore-shaped dicts upward, reads
a private attribute of botocore, or imports a room above it.
"""

from s3s3.store.base import (
    NO_HEADERS,
    Body,
    ContentHeaders,
    ObjectStream,
    Page,
    Part,
    Store,
    UploadPage,
    VersionPage,
)

__all__ = [
    "NO_HEADERS",
    "Body",
    "ContentHeaders",
    "ObjectStream",
    "Page",
    "Part",
    "Store",
    "UploadPage",
    "VersionPage",
]
