"""``s3s3bucket --enqueue --ranges N [--wait]`` and ``s3s3bucket runs``: a reconcile spread
over the listeners, and its progress.

    s3s3bucket --enqueue --ranges [N] [--wait [--timeout S]] ...
    s3s3bucket [--config FILE] runs [RUN_ID] [--json]

``--ranges`` puts N ranges of the key space (16 when N is left out) on the range stream
instead of the keys; every ``s3s3listen`` reconciles the ranges it takes. ``--wait`` waits
until every range is done or dead-lettered (at most ``--timeout`` seconds) and prints one
summary, as a run on this host does, with the same exit status (1 when a key failed, a
range was dead-lettered, or ranges were still open at the timeout). ``runs`` lists the
latest runs, or shows one run range by range. The work is :mod:`s3s3.bucketjob.ranged`;
this module prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading

from s3s3.bucketjob.ranged import enqueue_ranged_run, summary_of_run, wait_for_run
from s3s3.bucketjob.summary import JobSummary
from s3s3.scripts import _cli

log = logging.getLogger("s3s3.bucket")


def add_parser(commands) -> None:
    """The ``runs`` sub-command of ``s3s3bucket``."""
    runs = commands.add_parser(
        "runs",
        help="the ranged reconciles (--enqueue --ranges) and their progress",
        description="The latest ranged runs, or one run range by range: done (with its "
        "summary), dead-lettered, or open (waiting or being reconciled).",
    )
    runs.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="INI file (as before the sub-command)",
    )
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show")
    runs.add_argument("--json", action="store_true", help="one JSON object instead of text")


def ranged_run(
    args: argparse.Namespace, *, stop: threading.Event, seen: list[JobSummary]
) -> JobSummary | None:
    """Enqueue a ranged run; with ``--wait``, its summary once it is over (else None)."""
    settings = _cli.apply_limits(_cli.load_settings(args), args)
    record = enqueue_ranged_run(
        settings,
        ranges=args.ranges,
        delete=args.delete,
        size_only=args.size_only,
        prefix=args.prefix,
        include=args.include,
        exclude=args.exclude,
        verify_md5=args.verify_md5,
        list_concurrency=args.list_concurrency,
        stop=stop,
    )
    print(f"run {record.run_id}: {record.count} ranges enqueued", flush=True)
    if not args.wait:
        return None
    from s3s3.queue.redis_client import connect

    client = connect(settings.redis, socket_timeout=10)

    def progress(r) -> None:
        log.info(
            "run %s: %d of %d ranges done, %d dead",
            r.run_id,
            len(r.done),
            r.count,
            len(r.dead),
        )

    try:
        record = wait_for_run(
            client,
            settings,
            record.run_id,
            timeout_s=args.timeout,
            stop=stop,
            on_progress=progress,
        )
    finally:
        client.close()
    summary = summary_of_run(record)
    seen.append(summary)
    for dest in summary.destinations:
        print(dest.line(), flush=True)
        for failure in dest.failures[:20]:
            print(f"  failed {failure.op} {failure.key!r}: {failure.cause}")
    if record.open:
        log.error(
            "run %s: %d of %d ranges still open (%s)",
            record.run_id,
            len(record.open),
            record.count,
            "timed out" if not stop.is_set() else "stopped",
        )
    return summary


def runs_command(args: argparse.Namespace) -> int:
    """``s3s3bucket runs [RUN_ID] [--json]``."""
    import redis

    from s3s3.queue.redis_client import connect
    from s3s3.queue.runs import list_runs, read_run

    cfg = _cli.load_settings(args).redis
    client = connect(cfg, socket_timeout=10)
    try:
        ids = [args.run_id] if args.run_id else list_runs(client, cfg)
        records = [read_run(client, cfg, i) for i in ids]
    except redis.RedisError as exc:
        log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    if args.run_id and records[0] is None:
        log.error("no run %r (expired, or never made)", args.run_id)
        return _cli.EXIT_FATAL
    found = [r for r in records if r is not None]
    if args.json:
        out = [r.as_json() for r in found]
        json.dump(out[0] if args.run_id else out, sys.stdout)
        sys.stdout.write("\n")
        return _cli.EXIT_OK
    for record in found:
        print(
            f"run {record.run_id}: {record.count} ranges, {len(record.done)} done, "
            f"{len(record.dead)} dead, {len(record.open)} open"
        )
        if not args.run_id:
            continue
        summary = summary_of_run(record)
        for dest in summary.destinations:
            print("  " + dest.line())
        bounds = record.meta.get("ranges", [])
        for i, (after, end) in enumerate(bounds):
            where = f"({'' if after is None else repr(after)}, {'' if end is None else repr(end)}]"
            if i in record.done:
                parts = record.done[i].get("destinations", [])
                counts = "; ".join(
                    f"[{d['name']}] copied {d['copied']}, skipped {d['skipped']}, "
                    f"failed {d['failed']}"
                    for d in parts
                )
                state = f"done: {counts}"
            elif i in record.dead:
                state = f"dead: {record.dead[i].get('reason')}: {record.dead[i].get('error')}"
            else:
                state = "open"
            print(f"  range {i} {where}: {state}")
    return _cli.EXIT_OK


__all__ = ["add_parser", "ranged_run", "runs_command"]
