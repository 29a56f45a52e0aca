"""``s3s3bucket uploads``: the multipart uploads in progress at every destination, and
``--abort`` to abort s3s3's own.

    s3s3bucket [--config FILE] uploads [--prefix P] [--older-than AGE] [--abort] [--json]

One line per upload: the destination, key, upload ID, when it was initiated, its parts and
bytes (ListParts), and whether s3s3 keeps its progress (``resumable``: the next copy of the
key continues it) or not (``untracked``: another client's, or one whose record is gone).
``--abort`` aborts those s3s3 initiated, as the start-up sweep does (the server is asked
which Initiator it lists for s3s3), older than ``--older-than`` (default: each
destination's ``abort_uploads_after``; ``0``: every one). The work is
:func:`s3s3.transfer.survey_uploads` and :func:`s3s3.transfer.abort_own_uploads`; this
module prints.
"""

from __future__ import annotations

import argparse
import json

from s3s3 import config
from s3s3.errors import EndpointError
from s3s3.scripts import _cli
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import UploadState, abort_own_uploads, older_than, survey_uploads


def add_parser(commands) -> None:
    """The ``uploads`` sub-command of ``s3s3bucket``."""
    uploads = commands.add_parser(
        "uploads",
        help="list the multipart uploads in progress at the destinations; --abort s3s3's",
        description="Multipart uploads in progress at each destination: key, upload ID, "
        "initiated, parts, bytes, and whether s3s3 keeps its progress (a copy resumes it).",
    )
    uploads.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="INI file (as before the sub-command)",
    )
    uploads.add_argument(
        "--prefix",
        default=argparse.SUPPRESS,
        help="only keys under PREFIX (default: [bucket] prefix)",
    )
    uploads.add_argument(
        "--older-than",
        metavar="AGE",
        type=_duration,
        help="only uploads initiated more than AGE ago (30s, 2h, 1d; 0: all); default for "
        "--abort: each destination's abort_uploads_after, else all",
    )
    uploads.add_argument(
        "--abort", action="store_true", help="abort the uploads listed that s3s3 initiated"
    )
    uploads.add_argument("--json", action="store_true", help="one JSON object a line")


def _duration(text: str) -> float:
    try:
        return config.to_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def format_upload(upload: UploadState) -> str:
    initiated = upload.initiated.isoformat() if upload.initiated else "-"
    state = "resumable" if upload.tracked else "untracked"
    return (
        f"[{upload.destination}] {upload.key!r} upload {upload.upload_id} initiated "
        f"{initiated}: {upload.parts} parts, {upload.size} bytes, {state}"
    )


def _as_dict(upload: UploadState) -> dict:
    return {
        "destination": upload.destination,
        "bucket": upload.bucket,
        "key": upload.key,
        "upload_id": upload.upload_id,
        "initiated": upload.initiated.isoformat() if upload.initiated else None,
        "parts": upload.parts,
        "bytes": upload.size,
        "resumable": upload.tracked,
    }


def uploads_command(args: argparse.Namespace) -> int:
    """List (and abort); 2 when a destination cannot be listed."""
    settings = _cli.load_settings(args)
    prefix = args.prefix if args.prefix is not None else settings.bucket.prefix
    code = _cli.EXIT_OK
    for cfg in settings.destinations:
        dst = Endpoint(cfg)
        try:
            age = args.older_than
            if age is None:
                age = cfg.abort_uploads_after_s if args.abort else 0.0
            found = older_than(survey_uploads(dst, prefix=prefix), age)
            for upload in found:
                print(json.dumps(_as_dict(upload)) if args.json else format_upload(upload))
            if args.abort:
                aborted = abort_own_uploads(dst, found)
                for upload in aborted:
                    _cli.log.info(
                        "aborted upload %s of %r on [%s]", upload.upload_id, upload.key, cfg.name
                    )
                if not args.json:
                    print(f"[{cfg.name}] aborted {len(aborted)} of {len(found)} uploads")
        except EndpointError as exc:
            _cli.log.error("%s", exc)
            code = _cli.EXIT_FATAL
        finally:
            dst.close()
    return code


__all__ = ["add_parser", "format_upload", "uploads_command"]
