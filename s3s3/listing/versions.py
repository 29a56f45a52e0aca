"""Versioned listings (ListObjectVersions) as iterators of :class:`KeyVersions`: each key with
every version and delete marker it has, oldest first.

The server lists by key, and within a key newest first; a key's versions may span pages,
so a key is yielded once the listing has moved past it. Memory holds the pages in flight
and the versions of one key, never the bucket. Each page is tried through ``s3s3.retry``
under the endpoint's policy, as the object listings' pages are (:mod:`.serial`), and may be
fetched ahead in a thread (:func:`list_key_versions_ahead`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from s3s3 import retry
from s3s3.listing.serial import PREFETCH_PAGES, describe, prefetch
from s3s3.model import VersionInfo
from s3s3.store.base import Store, VersionPage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyVersions:
    """One key and its history: versions and delete markers, oldest first."""

    key: str
    versions: tuple[VersionInfo, ...]

    @property
    def latest(self) -> VersionInfo | None:
        return self.versions[-1] if self.versions else None


def list_version_pages(
    store: Store,
    prefix: str = "",
    *,
    page_size: int = 1000,
    policy: retry.Policy | None = None,
) -> Iterator[list[VersionInfo]]:
    """The version listing one page at a time, in the server's order, each page after the
    last entry of the one before (its key and version id as KeyMarker and VersionIdMarker).
    A page that would not move the markers on ends the listing, logged, rather
    than loop."""
    policy = policy or retry.Policy.for_endpoint(store.cfg)
    what = "versions of " + describe(store, prefix)
    markers: tuple[str | None, str | None] = (None, None)
    while True:
        page: VersionPage = retry.call(
            functools.partial(
                store.list_versions_page,
                prefix,
                page_size=page_size,
                key_marker=markers[0],
                version_id_marker=markers[1],
            ),
            policy=policy,
            what=what,
        )
        yield page.versions
        if not page.truncated or not page.versions:
            return
        # The last entry, not NextKeyMarker: Ceph 16.2 sends NextKeyMarker unencoded under
        # encoding-type=url, so decoding it turns "+" into " " and pages on from the wrong
        # key. The last entry is what S3 defines the next markers to be.
        last = page.versions[-1]
        following = (last.key, last.version_id)
        if following == markers:
            log.warning(
                "[%s] ListObjectVersions does not page on past %r; the listing stops there",
                store.name,
                following[0],
            )
            return
        markers = following


def group_versions(pages: Iterator[list[VersionInfo]]) -> Iterator[KeyVersions]:
    """Entries in the server's order (key ascending, newest first within a key) as one
    :class:`KeyVersions` a key, oldest first. A key seen again after another key (a listing
    out of order) raises ValueError, naming both keys."""
    key: str | None = None
    held: list[VersionInfo] = []
    for page in pages:
        for entry in page:
            if entry.key != key:
                if key is not None:
                    if entry.key.encode("utf-8") < key.encode("utf-8"):
                        raise ValueError(
                            f"the version listing went back from {key!r} to {entry.key!r}"
                        )
                    yield KeyVersions(key, tuple(reversed(held)))
                key, held = entry.key, []
            held.append(entry)
    if key is not None:
        yield KeyVersions(key, tuple(reversed(held)))


def list_key_versions(
    store: Store,
    prefix: str = "",
    *,
    page_size: int = 1000,
    ahead: bool = False,
    policy: retry.Policy | None = None,
) -> Iterator[KeyVersions]:
    """Every key under ``prefix`` with its versions, oldest first, in key order; with
    ``ahead``, up to :data:`~s3s3.listing.serial.PREFETCH_PAGES` pages fetched in a thread
    while the caller works. Pages are tried under ``policy`` (the endpoint's by default)."""
    pages = list_version_pages(store, prefix, page_size=page_size, policy=policy)
    if ahead:
        pages = prefetch(pages, depth=PREFETCH_PAGES, name=f"versions-{store.name}")
    return group_versions(pages)


def versions_of_key(
    store: Store, key: str, *, page_size: int = 1000, policy: retry.Policy | None = None
) -> KeyVersions:
    """``key``'s own versions, oldest first (none: the key never existed, or every version
    is gone). Lists with ``key`` as the prefix and stops at the first other key, which
    sorts after it: a key with few versions costs one request."""
    for found in list_key_versions(store, key, page_size=page_size, policy=policy):
        if found.key == key:
            return found
        break
    return KeyVersions(key, ())
