"""Versioned replication of one key at one destination: replay the source's missing
versions oldest first, each copied from exactly that version.

:func:`replay_key` carries out a :mod:`s3s3.versionplan` plan: it reads the identity
(``s3s3-source-version-id``) of the destination versions the planner names, plans again,
then writes each step in order, a version by :func:`transfer.copy_object` from the source
pinned to it (:class:`PinnedVersion`: a GET with ``versionId``, the copy's metadata
carrying the source version id), a delete marker by a DeleteObject without a version
(which is what a versioned bucket answers with a marker). Each step is retried under the
destination's policy; the steps of one key never run side by side, since their order is the
destination's history. :func:`reconcile_to_all` lists the key's versions on both sides first:
the listener's way, whatever order its events came in.

:func:`check_versioning` is what a run asks of each destination before anything is written:
versioning Enabled, or a clear error.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from s3s3 import retry
from s3s3.errors import FatalEndpointError
from s3s3.listing.versions import versions_of_key
from s3s3.model import SOURCE_VERSION_META, CopyResult, ObjectInfo, Outcome, VersionInfo
from s3s3.store.base import ObjectStream, Store
from s3s3.transfer import copy_object
from s3s3.versionplan import MARKER, KeyPlan, plan_key

log = logging.getLogger(__name__)

#: The status a destination's versioning must have for versions to be replayed there.
ENABLED = "Enabled"


@dataclass
class ReplayResult:
    """What one key's replay did at one destination."""

    key: str
    destination: str
    versions_copied: int = 0
    markers_written: int = 0
    bytes_copied: int = 0
    vanished: int = 0  # source versions gone (deleted for good) before they were read

    @property
    def outcome(self) -> Outcome:
        if self.versions_copied or self.markers_written:
            return Outcome.COPIED
        return Outcome.SKIPPED


class PinnedVersion:
    """A source :class:`~s3s3.store.base.Store` whose reads of ``key`` are of one version:
    every GET (ranged re-reads of a failed part too) and HEAD asks for ``version_id``, and
    a GET's headers carry it as ``s3s3-source-version-id`` for the copy to write. Everything
    else is the store's."""

    def __init__(self, store: Store, key: str, version_id: str) -> None:
        self._store = store
        self._key = key
        self.version_id = version_id

    def __repr__(self) -> str:
        return f"PinnedVersion({self._store!r}, version {self.version_id})"

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def _version(self, key: str, version_id: str | None) -> str | None:
        if version_id is not None:
            return version_id
        return self.version_id if key == self._key else None

    def head(self, key: str, *, version_id: str | None = None) -> ObjectInfo | None:
        return self._store.head(key, version_id=self._version(key, version_id))

    def get(
        self,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        version = self._version(key, version_id)
        obj = self._store.get(key, start=start, end=end, if_match=if_match, version_id=version)
        if version is None:
            return obj
        return ObjectStream(
            obj.info, obj.headers.with_metadata(SOURCE_VERSION_META, version), obj.body
        )


def check_versioning(dst: Store) -> None:
    """Raise :class:`FatalEndpointError` (code ``VersioningNotEnabled``) unless ``dst``'s
    bucket has versioning Enabled: a replayed history would otherwise overwrite itself
    down to its last version. A server without versioning answers its own error
    (``NotImplemented``), said here in the same words."""
    policy = retry.Policy.for_endpoint(dst.cfg)
    try:
        status = retry.call(
            dst.versioning, policy=policy, what=f"versioning of s3://{dst.bucket} on [{dst.name}]"
        )
    except FatalEndpointError as exc:
        if exc.code in ("NotImplemented", "MethodNotAllowed", "InvalidRequest"):
            raise FatalEndpointError(
                "the server does not support versioning (it answered "
                f"{exc.code} to GetBucketVersioning); versions = true needs a versioned "
                "destination",
                op="GetBucketVersioning",
                endpoint=dst.name,
                bucket=dst.bucket,
                code="VersioningUnsupported",
            ) from exc
        raise
    if status != ENABLED:
        state = "suspended" if status == "Suspended" else "never enabled"
        raise FatalEndpointError(
            f"versioning is {state} on this bucket; versions = true replays every version, "
            "which needs it Enabled (aws s3api put-bucket-versioning --bucket "
            f"{dst.bucket} --versioning-configuration Status=Enabled; a server without "
            "versioning, as Swift without allow_object_versioning, answers that with "
            "NotImplemented)",
            op="GetBucketVersioning",
            endpoint=dst.name,
            bucket=dst.bucket,
            code="VersioningNotEnabled",
        )


def plan_replay(
    dst: Store,
    key: str,
    source: Sequence[VersionInfo],
    dest: Sequence[VersionInfo],
    *,
    delete_markers: bool,
    policy: retry.Policy | None = None,
) -> KeyPlan:
    """The plan for ``key`` at ``dst``, after reading the identities it asks for (a HEAD
    of each such destination version, under ``policy``)."""
    plan = plan_key(key, source, dest, delete_markers=delete_markers)
    if not plan.identify:
        return plan
    policy = policy or retry.Policy.for_endpoint(dst.cfg)
    ids: dict[str, str | None] = {}
    for d in plan.identify:
        info = retry.call(
            functools.partial(dst.head, key, version_id=d.version_id),
            policy=policy,
            what=f"HEAD of version {d.version_id} of s3://{dst.bucket}/{key} on [{dst.name}]",
        )
        ids[d.version_id] = info.source_version_id if info is not None else None
    return plan_key(key, source, dest, delete_markers=delete_markers, identities=ids)


def replay_key(
    src: Store,
    dst: Store,
    key: str,
    source: Sequence[VersionInfo],
    dest: Sequence[VersionInfo],
    *,
    delete_markers: bool,
    cancel: threading.Event | None = None,
    plan: KeyPlan | None = None,
    policy: retry.Policy | None = None,
) -> ReplayResult:
    """Bring ``key``'s history at ``dst`` (``dest``, oldest first) in step with ``source``'s
    (see the module doc); ``plan``, when the caller made it already, is carried out as it
    is. Each request is tried under ``policy`` (the destination's by default). Raises the
    error of a step that failed for good (the steps before it stay written: the next run
    goes on from them)."""
    policy = policy or retry.Policy.for_endpoint(dst.cfg)
    if plan is None:
        plan = plan_replay(dst, key, source, dest, delete_markers=delete_markers, policy=policy)
    result = ReplayResult(key, dst.name)
    for step in plan.steps:
        version = step.version
        if step.op == MARKER:
            retry.call(
                functools.partial(dst.delete, key),
                policy=policy,
                what=f"delete marker for s3://{dst.bucket}/{key} on [{dst.name}]",
                cancel=cancel,
            )
            result.markers_written += 1
            continue
        pinned = PinnedVersion(src, key, version.version_id)
        copied = retry.call(
            functools.partial(
                copy_object,
                pinned,  # a Store: what it does not pin, it delegates
                dst,
                key,
                force=True,
                src_info=ObjectInfo(key, version.size, version.etag, version.last_modified),
                cancel=cancel,
            ),
            policy=policy,
            what=f"copy of version {version.version_id} of {key!r} to [{dst.name}]",
            cancel=cancel,
        )
        if copied.outcome is Outcome.MISSING:
            log.info(
                "version %s of %r is gone from the source: not replayed to [%s]",
                version.version_id,
                key,
                dst.name,
            )
            result.vanished += 1
            continue
        result.versions_copied += 1
        result.bytes_copied += copied.size
    return result


#: One try: for a caller that retries the whole of a key's work itself (the listener).
ONE_TRY = retry.Policy(attempts=1, base_s=0.0, max_s=0.0)


def reconcile_to_all(
    src: Store,
    dsts: Sequence[Store],
    key: str,
    *,
    delete_markers: bool,
    version_id: str | None = None,
    cancel: threading.Event | None = None,
    policy: retry.Policy = ONE_TRY,
) -> list[CopyResult | BaseException]:
    """List ``key``'s versions at the source once and at each destination, and replay what
    each misses: one event's work in the listener, right whatever order the events came in
    (the listing, not the event, says what the history is). One result per destination, a
    :class:`CopyResult` (``COPIED``, ``SKIPPED``, or ``MISSING`` when the source has no
    version of the key) or the exception its replay raised. ``version_id``, the version an
    event names, is only said in the log when the source no longer has it."""
    try:
        source = versions_of_key(src, key, policy=policy).versions
    except Exception as exc:
        return [exc for _ in dsts]
    if not source:
        return [CopyResult(key, dst.name, Outcome.MISSING) for dst in dsts]
    if version_id is not None and all(v.version_id != version_id for v in source):
        log.info("version %s of %r is no longer at the source; its history is", version_id, key)
    results: list[CopyResult | BaseException] = []
    for dst in dsts:
        started = time.monotonic()
        try:
            dest = versions_of_key(dst, key, policy=policy).versions
            done = replay_key(
                src,
                dst,
                key,
                source,
                dest,
                delete_markers=delete_markers,
                cancel=cancel,
                policy=policy,
            )
        except Exception as exc:
            results.append(exc)
            continue
        results.append(
            CopyResult(
                key,
                dst.name,
                done.outcome,
                size=done.bytes_copied,
                duration_s=time.monotonic() - started,
                bytes_read=done.bytes_copied,
            )
        )
    return results
