"""``s3s3listen``: the real-time replication daemon, and its dead-letter commands.

    s3s3listen [--config FILE] [--mode pubsub|stream]
    s3s3listen [--config FILE] dead-letters list [--count N]
    s3s3listen [--config FILE] dead-letters requeue [--count N | --id ID ...]
    s3s3listen [--config FILE] dead-letters purge (--all | --id ID ...)
    s3s3listen [--config FILE] status [--json]

Exit codes: 0 after a clean stop (SIGTERM/SIGINT) or a successful command; 2 on a
configuration or fatal error (bad credentials, missing bucket, Redis refusing us, the MinIO
list key holding something else); 3 when a thread of the daemon (the intake, the list
mover, a worker, the Redis writer) died of an unexpected exception. On 3 the daemon has logged the traceback
once at ERROR, stopped intake, given work in flight the grace period and handed back the
rest (stream mode: re-added for any listener; pub/sub: logged as lost), so a supervisor
restarting it (``autorestart=true``) loses nothing more than a restart would. Not 1:
Python itself exits 1 on an uncaught exception in the main thread, and a crash s3s3
caught and wound down cleanly should be told apart from one it did not. A bad message is
never a crash: it is logged, counted and (stream mode) dead-lettered.

SIGTERM or SIGINT stops intake and gives work in flight ``[listen] grace``; a second signal
stops waiting. The handlers are installed here (:func:`run_listener`), never by the daemon,
which is told through events and answers with how it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from s3s3 import config
from s3s3.errors import ConfigError
from s3s3.queue.contract import Mode
from s3s3.queue.redis_client import connect
from s3s3.scripts import _cli

if TYPE_CHECKING:
    from s3s3.listener.daemon import Stopped

log = _cli.log
daemon_log = logging.getLogger("s3s3.listen")

#: A thread of the daemon died of an unexpected exception (a bug): it stopped, after handing
#: back what it held, so that its supervisor restarts it rather than it living on without
#: intake or workers.
EXIT_CRASH = 3


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.parser(
        "s3s3listen",
        "Replicate keys announced through Redis (pub/sub or a "
        "stream) from the source to every destination.",
    )
    parser.add_argument(
        "--mode",
        choices=("pubsub", "stream"),
        help="override [pubsub] mode: pubsub (compatible, loses what is "
        "published while no listener runs) or stream (reliable)",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDRESS",
        help="serve /metrics, /healthz and /readyz on PORT, HOST:PORT or HOST:PORT-PORT "
        "(the first free port of a range), or 'off'; overrides [metrics] listen",
    )
    parser.add_argument(
        "--ranges-at-once",
        type=int,
        default=1,
        metavar="N",
        help="ranges of ranged reconciles (s3s3bucket --enqueue --ranges) worked on at once, "
        "beside the keys (default 1)",
    )
    _cli.add_limit_options(parser, section="listen")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dead = commands.add_parser(
        "dead-letters",
        help="list, requeue or purge the dead-letter stream (stream mode)",
        description="Entries that failed max_deliveries times wait in the dead-letter stream "
        "with the reason and the error. Fix the cause, then requeue them.",
    )
    # Also accepted after the sub-command: ``s3s3listen dead-letters list --config FILE``.
    dead.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="INI file (as before the sub-command)",
    )
    dead.add_argument("action", choices=("list", "requeue", "purge"))
    dead.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="list: at most N (default 100); requeue: the oldest N (default all)",
    )
    dead.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="ID",
        default=[],
        help="a dead letter's id (repeatable); requeue or purge only these",
    )
    dead.add_argument("--all", action="store_true", help="purge: delete every dead letter")
    status = commands.add_parser(
        "status",
        help="the stream, its consumers, what is pending and the dead letters (stream mode)",
        description="What the stream holds and who works on it: its length, entries not "
        "delivered yet, pending entries and the age of the oldest, each consumer, and the "
        "dead letters.",
    )
    status.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="INI file (as before the sub-command)",
    )
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return parser


def effective_settings(args: argparse.Namespace) -> config.Settings:
    """The INI settings with command-line overrides applied (and checked)."""
    settings = _cli.apply_limits(_cli.load_settings(args), args)
    if args.mode and args.mode != settings.redis.mode:
        if Mode(args.mode) is not Mode.STREAM and settings.redis.list_key:
            raise ConfigError(
                "--mode pubsub cannot be used with [pubsub] list, which needs the stream"
            )
        settings = dataclasses.replace(
            settings, redis=dataclasses.replace(settings.redis, mode=args.mode)
        )
    if getattr(args, "metrics", None) is not None:
        try:
            address = config.to_address(args.metrics)
        except ValueError as exc:
            raise ConfigError(f"--metrics {args.metrics!r} {exc}") from None
        settings = dataclasses.replace(
            settings, metrics=dataclasses.replace(settings.metrics, listen=address)
        )
    return settings


def install_signals(
    stop: threading.Event, hurry: threading.Event, received: list[str]
) -> Callable[[], None]:
    """SIGTERM/SIGINT: the first sets ``stop``, a second ``hurry`` too; each signal's name
    is appended to ``received``. Returns what restores the previous handlers."""

    def handler(signum: int, _frame: object) -> None:
        # Only set events here: logging from a signal handler can deadlock on its own lock.
        received.append(signal.Signals(signum).name)
        if stop.is_set():
            hurry.set()
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def exit_code(stopped: Stopped) -> int:
    """The exit code for how the daemon stopped, after the log line that says so."""
    from s3s3.listener.daemon import Status

    if stopped.status is Status.CRASHED:
        daemon_log.error(
            "s3s3listen stopped after thread %s crashed (exit code %d)", stopped.thread, EXIT_CRASH
        )
        return EXIT_CRASH
    if stopped.status is Status.REFUSED:
        return _cli.EXIT_FATAL  # the daemon has said why ("fatal: ...")
    if stopped.status is Status.FATAL:
        daemon_log.info("s3s3listen stopped after a fatal error: %s", stopped.error)
        return _cli.EXIT_FATAL
    daemon_log.info("s3s3listen stopped")
    return _cli.EXIT_OK


def run_listener(
    settings: config.Settings, *, stop: threading.Event | None = None, range_slots: int = 1
) -> int:
    """Run ``s3s3listen`` with ``settings`` until ``stop`` is set or a signal arrives.

    Returns the exit code (0 clean stop, 2 fatal, 3 a thread crashed). Signal handlers are
    installed only when called from the main thread, and restored on return.
    """
    # The engine is imported only when it runs, not for the dead-letter commands.
    from s3s3.listener.counters import Counters
    from s3s3.listener.daemon import Listener
    from s3s3.queue.intake import open_intake

    stop = stop or threading.Event()
    hurry = threading.Event()
    received: list[str] = []
    counters = Counters()
    served = None
    observer = None
    if settings.metrics.listen is not None:
        from s3s3.metrics.wiring import listener_metrics

        observer, served = listener_metrics(settings, counters)
    # Ranges of a ranged reconcile are reconciled by the bucket job's own engine, injected
    # here: the listener room knows only that it is a callable.
    from s3s3.bucketjob.ranged import RangeReconcile

    listener = Listener(
        settings,
        open_intake=open_intake,
        counters=counters,
        observer=observer,
        reconcile_range=RangeReconcile(settings),
        range_slots=range_slots,
    )
    in_main = threading.current_thread() is threading.main_thread()
    restore = install_signals(stop, hurry, received) if in_main else None
    try:
        if served is not None:
            served.start(listener)
        stopped = listener.run(stop=stop, hurry=hurry, reasons=received)
    finally:
        if served is not None:
            served.stop()
        if restore is not None:
            restore()
    return exit_code(stopped)


def _listen(args: argparse.Namespace) -> int:
    if args.ranges_at_once < 1:
        raise ConfigError(f"--ranges-at-once must be at least 1, not {args.ranges_at_once}")
    return run_listener(effective_settings(args), range_slots=args.ranges_at_once)


def _dead_letters(args: argparse.Namespace) -> int:
    from s3s3.queue.stream import (
        dead_letter_counts,
        list_dead_letters,
        purge_dead_letters,
        requeue_dead_letters,
    )

    cfg = _cli.load_settings(args).redis
    # Sharded streams: every shard's dead letters (and the unsharded ones), said as such.
    where = (
        cfg.dead_letter_stream
        if cfg.shards <= 1
        else f"the dead-letter streams of {cfg.shards} shards and {cfg.dead_letter_stream}"
    )
    client = connect(cfg)
    try:
        if args.action == "list":
            letters = list_dead_letters(client, cfg, count=args.count or 100)
            for letter in letters:
                print(letter.describe())
            total = sum(dead_letter_counts(client, cfg).values())
            log.info("%d dead letters in %s (%d shown)", total, where, len(letters))
        elif args.action == "requeue":
            n = requeue_dead_letters(client, cfg, ids=args.ids or None, count=args.count)
            into = cfg.stream if cfg.shards <= 1 else "the stream of each one's shard"
            print(f"requeued {n} dead letters into {into}")
        else:
            if not args.ids and not args.all:
                log.error("purge needs --all or --id ID")
                return _cli.EXIT_FATAL
            n = purge_dead_letters(client, cfg, ids=args.ids or None)
            print(f"deleted {n} dead letters from {where}")
    except redis.RedisError as exc:
        log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    return _cli.EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from s3s3.scripts.status import status_command

    return status_command(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args)
    body = {"dead-letters": _dead_letters, "status": _status}.get(args.command, _listen)
    return _cli.run(body, args)


if __name__ == "__main__":
    sys.exit(main())
