"""Bucket listings as iterators of :class:`ObjectInfo`, in S3's key order.

- :mod:`.serial`: one request at a time (:func:`list_objects`, :func:`list_pages`), and
  :func:`list_objects_ahead`, a few pages fetched ahead in a thread;
- :mod:`.parallel`: several ranges of the key space listed at once by ``StartAfter``
  bisection (:func:`list_objects_parallel`), still handed over in key order;
- :mod:`.split`: a bucket's key space cut into ranges where its keys are
  (:func:`split_ranges`), for a reconcile spread over many listeners;
- :mod:`.versions`: ListObjectVersions as one :class:`KeyVersions` a key, its versions and
  delete markers oldest first (:func:`list_key_versions`, :func:`versions_of_key`).
"""

from s3s3.listing.parallel import list_objects_parallel
from s3s3.listing.serial import (
    PREFETCH_PAGES,
    list_objects,
    list_objects_ahead,
    list_pages,
    prefetch,
)
from s3s3.listing.split import split_ranges
from s3s3.listing.versions import KeyVersions, list_key_versions, versions_of_key

__all__ = [
    "PREFETCH_PAGES",
    "KeyVersions",
    "list_objects",
    "list_objects_ahead",
    "list_objects_parallel",
    "list_key_versions",
    "list_pages",
    "prefetch",
    "split_ranges",
    "versions_of_key",
]
