"""What a key's history needs at a destination: the pure planner of versioned replication.

A destination gives each version an id of its own, so a copy is recognised by what it holds:
its ETag and size (the fingerprint a listing shows) or, where those differ from the source's
(a multipart copy cut into other parts), the ``s3s3-source-version-id`` a HEAD reads. Which
destination versions need that HEAD is the planner's answer too (:attr:`KeyPlan.identify`):
the caller reads them and plans again. Nothing here does I/O.

The rule, for the source's history ``P`` (oldest first; delete markers only when they are
replicated) and the destination's ``D``:

1. walk ``D`` oldest first, matching ``P`` in order: ``P[i]`` is present when a version of
   ``D`` after the one that matched ``P[i-1]`` holds it. Versions of ``D`` that match
   nothing (written there by someone else, or copies of source versions deleted since) are
   passed over, never removed;
2. ``P[i:]``, the first unmatched on, is replayed oldest first: a version copied out of
   order (the listener ahead of the bucket job) is copied again after the ones that missed,
   so the destination's latest is the source's latest;
3. with all of ``P`` present, a destination whose latest version is not ``P``'s latest (a
   write made there) gets ``P``'s latest once more.

Re-running over what a run replayed matches all of ``P``: a no-op that costs the listings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from s3s3.model import VersionInfo, etag_is_md5

COPY = "copy"
MARKER = "marker"


@dataclass(frozen=True)
class Step:
    """One thing to write at the destination: a copy of source version ``version``, or
    (``op`` MARKER) a delete marker for the source's marker ``version``."""

    op: str
    version: VersionInfo


@dataclass(frozen=True)
class KeyPlan:
    """The steps for one key at one destination, oldest first, and the destination versions
    whose ``s3s3-source-version-id`` could change them (read those and plan again)."""

    key: str
    steps: tuple[Step, ...] = ()
    identify: tuple[VersionInfo, ...] = ()

    @property
    def in_step(self) -> bool:
        return not self.steps


def replicated(source: Sequence[VersionInfo], *, delete_markers: bool) -> list[VersionInfo]:
    """The part of a source history that is replicated: every version, and the delete
    markers only with ``delete_markers`` (AWS's DeleteMarkerReplication), oldest first. A
    run of markers after the first adds nothing a destination would show, and is kept as the
    source has it."""
    return [v for v in source if delete_markers or not v.delete_marker]


def plan_key(
    key: str,
    source: Sequence[VersionInfo],
    dest: Sequence[VersionInfo],
    *,
    delete_markers: bool,
    identities: Mapping[str, str | None] | None = None,
) -> KeyPlan:
    """The steps that bring ``dest`` (the destination's history of ``key``, oldest first)
    in step with ``source`` (the source's), by the rule of the module doc.

    ``identities`` maps destination version ids to the source version id a HEAD read on them
    (None: they carry none). Without an identity, versions match by fingerprint; a
    destination version that cannot match by fingerprint but might be a copy (the same size,
    a multipart ETag on one side) is named in :attr:`KeyPlan.identify` when the plan has
    steps, for the caller to read.
    """
    ids = identities or {}
    wanted = replicated(source, delete_markers=delete_markers)

    def same(d: VersionInfo, p: VersionInfo) -> bool:
        if p.delete_marker or d.delete_marker:
            return p.delete_marker and d.delete_marker
        if d.version_id in ids and ids[d.version_id] is not None:
            return ids[d.version_id] == p.version_id
        return d.fingerprint == p.fingerprint

    matched = 0
    for d in dest:
        if matched < len(wanted) and same(d, wanted[matched]):
            matched += 1
    steps = [_step(p) for p in wanted[matched:]]
    if not steps and wanted and (not dest or not same(dest[-1], wanted[-1])):
        steps = [_step(wanted[-1])]
    if not steps:
        return KeyPlan(key)
    return KeyPlan(key, tuple(steps), _to_identify(wanted, dest, ids))


def _step(version: VersionInfo) -> Step:
    return Step(MARKER if version.delete_marker else COPY, version)


def _to_identify(
    wanted: Sequence[VersionInfo], dest: Sequence[VersionInfo], ids: Mapping[str, str | None]
) -> tuple[VersionInfo, ...]:
    """Destination versions not yet read whose identity might match a source version their
    fingerprint does not: same size, and a multipart ETag on either side."""
    sizes: dict[int, list[VersionInfo]] = {}
    for p in wanted:
        if not p.delete_marker:
            sizes.setdefault(p.size, []).append(p)
    found = []
    for d in dest:
        if d.delete_marker or d.version_id in ids:
            continue
        for p in sizes.get(d.size, ()):
            if d.fingerprint != p.fingerprint and not (etag_is_md5(d.etag) and etag_is_md5(p.etag)):
                found.append(d)
                break
    return tuple(found)


def describe(plan: KeyPlan) -> str:
    """A plan as one line, for logs and dry runs."""
    parts = [
        ("delete marker" if s.op == MARKER else f"version {s.version.version_id}")
        for s in plan.steps
    ]
    return f"{plan.key!r}: " + (", ".join(parts) if parts else "in step")
