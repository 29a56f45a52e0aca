"""``s3s3listen``: the real-time replication daemon, and its dead-letter commands.

    s3s3listen [--config FILE] [--mode pubsub|stream]
    s3s3listen [--config FILE] dead-letters list [--count N]
    s3s3listen [--config FILE] dead-letters requeue [--count N | --id ID ...]
    s3s3listen [--config FILE] dead-letters purge (--all | --id ID ...)

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
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import redis

from s3s3 import config
from s3s3.errors import ConfigError
from s3s3.queue.redis_client import connect
from s3s3.scripts import _cli

log = _cli.log


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
    return parser


def effective_settings(args: argparse.Namespace) -> config.Settings:
    """The INI settings with command-line overrides applied (and checked)."""
    settings = _cli.load_settings(args)
    if args.mode and args.mode != settings.redis.mode:
        if args.mode != "stream" and settings.redis.list_key:
            raise ConfigError(
                "--mode pubsub cannot be used with [pubsub] list, which needs the stream"
            )
        settings = dataclasses.replace(
            settings, redis=dataclasses.replace(settings.redis, mode=args.mode)
        )
    return settings


def _listen(args: argparse.Namespace) -> int:
    from s3s3.listener.replicator import run_listener  # the engine is imported only when it runs

    return run_listener(effective_settings(args))


def _dead_letters(args: argparse.Namespace) -> int:
    from s3s3.queue.stream import list_dead_letters, purge_dead_letters, requeue_dead_letters

    cfg = _cli.load_settings(args).redis
    client = connect(cfg)
    try:
        if args.action == "list":
            letters = list_dead_letters(client, cfg, count=args.count or 100)
            for letter in letters:
                print(letter.describe())
            total = client.xlen(cfg.dead_letter_stream)
            log.info(
                "%d dead letters in %s (%d shown)", total, cfg.dead_letter_stream, len(letters)
            )
        elif args.action == "requeue":
            n = requeue_dead_letters(client, cfg, ids=args.ids or None, count=args.count)
            print(f"requeued {n} dead letters into {cfg.stream}")
        else:
            if not args.ids and not args.all:
                log.error("purge needs --all or --id ID")
                return _cli.EXIT_FATAL
            n = purge_dead_letters(client, cfg, ids=args.ids or None)
            print(f"deleted {n} dead letters from {cfg.dead_letter_stream}")
    except redis.RedisError as exc:
        log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    return _cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args)
    body = _dead_letters if args.command == "dead-letters" else _listen
    return _cli.run(body, args)


if __name__ == "__main__":
    sys.exit(main())
