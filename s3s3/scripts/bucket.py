"""``s3s3bucket``: reconcile the destination buckets with the source, from cron or supervisord.

    s3s3bucket --config /usr/local/etc/s3s3.ini [--dry-run] [--delete] [--prefix P] ...
    s3s3bucket --config FILE uploads [--older-than AGE] [--abort]   (s3s3.scripts.uploads)
    s3s3bucket --config FILE --enqueue --ranges [N] [--wait [--timeout S]]  (s3s3.scripts.runs)
    s3s3bucket --config FILE runs [RUN_ID] [--json]

Exit status: 0 everything in step, 1 some objects failed, 2 configuration or fatal error
(including another run holding the lock, and a refused deletion).

``--supervisord`` runs it as a supervisord event listener (``[eventlistener:s3s3bucket]``
with ``events=TICK_3600``): it answers ``READY``, runs one reconciliation per ``TICK_*``
event, re-reading the INI each time, and answers ``RESULT 2\\nOK`` once the run has happened,
whatever its outcome (which is logged), or ``RESULT 4\\nFAIL`` when it could not happen
(configuration or fatal error; supervisord then sends the event again). A tick met while
another run holds the lock is answered OK: that run is doing the work. Standard output
belongs to the protocol (:mod:`s3s3.scripts.supervisor`); everything else goes to standard
error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from s3s3.bucketjob.ranged import DEFAULT_RANGES
from s3s3.bucketjob.runner import run_bucket_job
from s3s3.bucketjob.summary import JobSummary, ProgressLog
from s3s3.config import MetricsConfig
from s3s3.errors import ConfigError, FatalEndpointError, LockHeld, S3S3Error
from s3s3.scripts import _cli, progress, runs, uploads
from s3s3.scripts._cli import EXIT_FAILURES, EXIT_FATAL, EXIT_OK
from s3s3.scripts.supervisor import EventListener

log = logging.getLogger("s3s3.bucket")


def build_parser() -> argparse.ArgumentParser:
    p = _cli.parser("s3s3bucket", "Make every destination bucket hold what the source holds.")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, one line per action, and change nothing",
    )
    p.add_argument(
        "--delete",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="delete destination keys that are not in the source (within "
        "max_delete_fraction); overrides 'delete' in [bucket]",
    )
    p.add_argument(
        "--size-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compare sizes only; overrides 'size_only' in [bucket]",
    )
    p.add_argument(
        "--verify-md5",
        action="store_true",
        help="where no md5 is known for a side, read the object to compute it "
        "(as verify_md5 = True on every endpoint)",
    )
    p.add_argument("--prefix", help="only keys starting with PREFIX; overrides [bucket]")
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only keys matching GLOB (fnmatch; '*' also matches '/'); "
        "repeatable; replaces 'include' in [bucket]",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="skip keys matching GLOB; repeatable; replaces 'exclude' in [bucket]",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="concurrent copies; overrides 'workers' in [bucket]",
    )
    p.add_argument(
        "--list-concurrency",
        type=_positive_int,
        metavar="N",
        help="listing requests at once on each side (1: one page at a time); "
        "overrides 'list_concurrency' in [bucket]",
    )
    p.add_argument(
        "--versions",
        action="store_true",
        help="replay every version of the source's keys, oldest first, at destinations with "
        "versioning enabled (as versions = true on [source]; delete markers too with "
        "delete_markers = true)",
    )
    p.add_argument(
        "--enqueue",
        action="store_true",
        help="add the keys to copy to the listener's Redis Stream instead of "
        "copying them, for s3s3listen workers to copy",
    )
    p.add_argument(
        "--ranges",
        nargs="?",
        type=_positive_int,
        const=DEFAULT_RANGES,
        metavar="N",
        help="with --enqueue: add N ranges of the key space (default "
        f"{DEFAULT_RANGES}) instead of keys, each reconciled by one s3s3listen of the fleet",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="with --ranges: wait until every range is done or dead, and print one summary",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --wait: give up waiting after S seconds (exit status 1)",
    )
    p.add_argument(
        "--supervisord",
        action="store_true",
        help="run as a supervisord event listener: one run per TICK event",
    )
    p.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's metrics there in node_exporter's textfile format (atomically), "
        "failed runs included; overrides [metrics] textfile",
    )
    p.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the run's metrics to this Prometheus Pushgateway; overrides [metrics] "
        "pushgateway",
    )
    _cli.add_limit_options(p, section="bucket")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    uploads.add_parser(commands)
    runs.add_parser(commands)
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def exit_status(summary: JobSummary) -> int:
    if any(d.delete_refused for d in summary.destinations):
        return EXIT_FATAL
    return EXIT_OK if summary.ok else EXIT_FAILURES


_print_lock = threading.Lock()


def print_line(line: str) -> None:
    """The dry-run plan on standard output, one whole line at a time (from any thread)."""
    with _print_lock:
        sys.stdout.write(line + "\n")


def run_once(
    args: argparse.Namespace,
    *,
    stop: threading.Event,
    on_plan: Callable[[str], None] = print_line,
) -> JobSummary:
    """One run with the flags of ``args``; raises what keeps it from happening."""
    settings = _cli.apply_limits(_cli.load_settings(args), args)
    interval_s = settings.bucket.progress_interval_s
    shown = (
        ProgressLog(interval_s=interval_s)
        if args.quiet or args.supervisord
        else progress.for_stream(sys.stderr, interval_s=interval_s)
    )
    return run_bucket_job(
        settings,
        dry_run=args.dry_run,
        enqueue=args.enqueue,
        delete=args.delete,
        size_only=args.size_only,
        prefix=args.prefix,
        include=args.include,
        exclude=args.exclude,
        workers=args.workers,
        list_concurrency=args.list_concurrency,
        verify_md5=args.verify_md5,
        versions=True if args.versions else None,
        progress=shown,
        stop=stop,
        on_plan=on_plan,
    )


def reconcile(
    args: argparse.Namespace, *, stop: threading.Event, seen: list[JobSummary] | None = None
) -> int:
    """One command-line run; its exit status. Its summary is appended to ``seen``."""
    try:
        if args.ranges is not None:
            return _ranged(args, stop=stop, seen=seen)
        summary = run_once(args, stop=stop)
        if seen is not None:
            seen.append(summary)
        return exit_status(summary)
    except (ConfigError, FatalEndpointError, LockHeld):
        raise  # _cli.run logs them and answers EXIT_FATAL
    except S3S3Error as exc:  # the source cannot be listed, Redis is gone, ...
        log.error("%s", exc)
        return EXIT_FATAL


def _ranged(args: argparse.Namespace, *, stop: threading.Event, seen: list | None) -> int:
    if not args.enqueue:
        raise ConfigError("--ranges needs --enqueue: the ranges are reconciled by s3s3listen")
    if args.dry_run or args.supervisord:
        raise ConfigError("--ranges cannot be combined with --dry-run or --supervisord")
    summary = runs.ranged_run(args, stop=stop, seen=seen if seen is not None else [])
    return EXIT_OK if summary is None else exit_status(summary)


class Lifecycle:
    """What SIGTERM does: the run in progress stops taking work, an idle listener leaves.

    Each run gets its own stop event, which a lost lock may also set without ending the
    listener.
    """

    def __init__(self) -> None:
        self.terminated = threading.Event()
        self.run_stop = threading.Event()
        self.idle = False

    def new_run(self) -> threading.Event:
        self.run_stop = threading.Event()
        if self.terminated.is_set():
            self.run_stop.set()
        return self.run_stop

    def on_sigterm(self, signum, frame) -> None:
        self.terminated.set()
        self.run_stop.set()
        if self.idle:
            raise SystemExit(EXIT_OK)
        log.warning("SIGTERM: finishing the work in flight, then stopping")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args)
    if args.command == "uploads":
        return _cli.run(uploads.uploads_command, args)
    if args.command == "runs":
        return _cli.run(runs.runs_command, args)
    if (args.wait or args.timeout is not None) and args.ranges is None:
        log.error("--wait and --timeout go with --enqueue --ranges")
        return EXIT_FATAL
    life = Lifecycle()
    signal.signal(signal.SIGTERM, life.on_sigterm)
    if args.supervisord:
        protocol_out = sys.stdout.buffer
        sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
        return serve_supervisord(args, sys.stdin.buffer, protocol_out, life=life)
    started = time.time()
    seen: list[JobSummary] = []
    code = EXIT_FATAL
    try:
        code = _cli.run(lambda a: reconcile(a, stop=life.new_run(), seen=seen), args)
    except Exception:  # the outermost loop: a bug, logged with its traceback
        log.exception("unexpected error")
    report_metrics(args, started, code, seen[-1] if seen else None)
    return code


def report_metrics(
    args: argparse.Namespace, started: float, code: int, summary: JobSummary | None
) -> None:
    """Leave the run in the metrics file and push it, where configured. A run that could
    not read its configuration is written too when ``--metrics-file`` names the file,
    under the source the file named before (so its last success is kept)."""
    try:
        settings = _cli.load_settings(args)
    except S3S3Error:
        settings = None
    # Without settings, [metrics]' defaults (period, job) still apply to what is written.
    metrics = settings.metrics if settings is not None else MetricsConfig()
    path = args.metrics_file or metrics.textfile
    gateway = args.pushgateway or metrics.pushgateway
    if not path and not gateway:
        return
    from s3s3.metrics import bucketjob

    if settings is not None:
        source = settings.source.bucket
    else:
        named = bucketjob.sources_in(path) if path else []
        source = named[0] if len(named) == 1 else "unknown"
    run = bucketjob.Run(
        source=source,
        started=started,
        ended=time.time(),
        exit_status=code,
        summary=summary,
        period_s=metrics.period_s,
    )
    bucketjob.publish(run, textfile=path, pushgateway=gateway, job=metrics.job)


def serve_supervisord(
    args: argparse.Namespace, stdin: BinaryIO, stdout: BinaryIO, *, life: Lifecycle
) -> int:
    """Speak supervisord's event listener protocol on binary ``stdin``/``stdout``: one run
    per ``TICK_*`` event, any other event acknowledged as it comes."""

    def on_plan(line: str) -> None:
        sys.stderr.write(line + "\n")

    listener = EventListener(stdin, stdout)
    while not life.terminated.is_set():
        life.idle = True
        listener.ready()
        event = listener.next_event()
        life.idle = False
        if event is None:
            return EXIT_OK
        ok = True
        if event.name.startswith("TICK_"):
            log.info("%s: starting a run", event.name)
            ok = _tick(args, stop=life.new_run(), on_plan=on_plan)
        else:
            log.debug("ignoring supervisord event %s", event.name)
        if ok:
            listener.ok()
        else:
            listener.fail()
    return EXIT_OK


def _tick(
    args: argparse.Namespace, *, stop: threading.Event, on_plan: Callable[[str], None]
) -> bool:
    """One run for one TICK event; False when it could not happen at all.

    A run that happened is acknowledged whatever its outcome (failed keys, a refused
    deletion): it is logged, and a re-sent tick would only repeat it at once.
    """

    started = time.time()
    status: list[int] = []
    seen: list[JobSummary] = []

    def body(a: argparse.Namespace) -> int:
        try:
            summary = run_once(a, stop=stop, on_plan=on_plan)
        except LockHeld as exc:
            log.warning("%s; this tick is skipped", exc)
            status.append(-1)
            return EXIT_OK
        except (ConfigError, FatalEndpointError):
            raise  # _cli.run logs them and answers EXIT_FATAL
        except S3S3Error as exc:
            log.error("%s", exc)
            return EXIT_FATAL
        seen.append(summary)
        status.append(exit_status(summary))
        log.info("run finished with exit status %d", status[-1])
        return EXIT_OK

    try:
        code = _cli.run(body, args)
    except Exception:  # the outermost loop: a bug, logged; the listener stays up
        log.exception("unexpected error")
        return False
    if status != [-1]:  # a tick skipped for another run's lock leaves that run's metrics
        report_metrics(args, started, status[-1] if status else code, seen[-1] if seen else None)
    return code == EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
