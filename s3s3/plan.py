"""Deciding what to copy, without I/O.

:func:`decide` is the copy strategy for one key seen on both sides. Its truth table, read
top to bottom, first match wins (``md5`` is the ETag when it is an md5, else the
``s3s3-md5`` metadata s3s3 writes on multipart uploads, else unknown):

    destination     sizes    md5s (src, dst)      size_only  verify_md5  verdict
    -----------     -----    ---------------      ---------  ----------  -------
    absent          -        -                    -          -           COPY
    present         differ   -                    -          -           COPY
    present         equal    -                    yes        -           SKIP
    present         equal    both known, equal    no         -           SKIP
    present         equal    both known, differ   no         -           COPY
    present         equal    ETags equal*         no         -           SKIP
    present         equal    a side unknown       no         yes         HASH (read, compare)
    present         equal    a side unknown       no         no          SKIP if dst is not
                                                                         older than src, else
                                                                         COPY (size + mtime)

    * identical non-md5 ETags: the same multipart layout of the same bytes.

The size + modification time fallback is used only where no md5 exists on one side; it is
the weakest test and the README says so.
"""

from __future__ import annotations

import enum

from .endpoint import ObjectInfo


class Verdict(enum.Enum):
    COPY = "copy"
    SKIP = "skip"
    HASH = "hash"  # compute the md5 of the side(s) lacking one, then compare


def decide(src: ObjectInfo, dst: ObjectInfo | None, *, size_only: bool = False,
           verify_md5: bool = False) -> Verdict:
    """Whether ``dst`` must be (re)written from ``src``; see the module's truth table."""
    if dst is None or src.size != dst.size:
        return Verdict.COPY
    if size_only:
        return Verdict.SKIP
    src_md5, dst_md5 = src.known_md5, dst.known_md5
    if src_md5 and dst_md5:
        return Verdict.SKIP if src_md5 == dst_md5 else Verdict.COPY
    if src.etag and src.etag == dst.etag:
        return Verdict.SKIP
    if verify_md5:
        return Verdict.HASH
    if src.last_modified and dst.last_modified and dst.last_modified >= src.last_modified:
        return Verdict.SKIP
    return Verdict.COPY
