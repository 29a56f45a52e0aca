"""``s3s3publish``: announce keys to the listeners, or bridge PUBLISH into the stream.

    s3s3publish [--config FILE] [--mode pubsub|stream] [--delete] KEY [KEY ...]
    s3s3publish [--config FILE] [--mode ...] [--delete] < keys.txt      (one key per line)
    s3s3publish [--config FILE] --bridge

In pub/sub mode each key is PUBLISHed on the channel (the 2015 message: the key itself);
in stream mode it is XADDed as an entry ``{key, op}``. ``--bridge`` subscribes to the
channel and XADDs every message into the stream until stopped (SIGTERM/SIGINT), so
producers that only PUBLISH can feed listeners in stream mode.

Exit codes: 0 all announced; 1 some keys were rejected (empty, over 1,024 bytes, not
UTF-8), each named in a one-line error, the others announced; 2 configuration error, Redis
unreachable, or the stream full (``maxlen``) for too long. No key, whatever its bytes,
makes a traceback: keys are read from stdin as bytes and checked one by one.

This script reads arguments, installs the bridge's signal handlers and maps failures to
exit codes; announcing is :mod:`s3s3.queue.producer`'s work and bridging
:mod:`s3s3.queue.bridge`'s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import redis

from s3s3.errors import MessageError
from s3s3.model import COPY, DELETE
from s3s3.queue.contract import Mode
from s3s3.queue.redis_client import connect
from s3s3.scripts import _cli
from s3s3.scripts.listen import effective_settings

log = _cli.log


def build_parser() -> argparse.ArgumentParser:
    parser = _cli.parser(
        "s3s3publish",
        "Announce source keys to s3s3listen in the configured "
        "mode, or bridge pub/sub messages into the stream.",
    )
    parser.add_argument(
        "keys",
        nargs="*",
        metavar="KEY",
        help="keys to announce; none (or '-') reads them from stdin, one per line",
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode], help="override [pubsub] mode")
    parser.add_argument(
        "--delete",
        action="store_true",
        help="announce deletions (listeners apply them only with [listen] delete = true)",
    )
    parser.add_argument(
        "--bridge",
        action="store_true",
        help="subscribe to the channel and add every message to the stream, until SIGTERM/SIGINT",
    )
    return parser


def read_keys(args: argparse.Namespace, stdin) -> list[str | bytes]:
    """Keys from the arguments, or from stdin: one per line, line ends stripped, blanks skipped.

    A key that is not UTF-8 comes back as its bytes (an argument's as the system passed
    them), for the caller to reject by name. Lines read from stdin end only at ``\\n``
    (trailing ``\\r`` are stripped too), so a key may hold a ``\\r`` inside.
    """
    if args.keys and args.keys != ["-"]:
        return [_argument_key(key) for key in args.keys]
    keys: list[str | bytes] = []
    for line in getattr(stdin, "buffer", stdin):
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogateescape")
        line = line.rstrip(b"\r\n")
        if line:
            try:
                keys.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                keys.append(line)
    return keys


def _argument_key(key: str) -> str | bytes:
    """An argument as a key; its bytes when it is not UTF-8 (Python decoded it with
    surrogateescape, and no store can take a lone surrogate)."""
    try:
        key.encode("utf-8")
        return key
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(key)
    except UnicodeError:
        return key  # not from the system: validate_key names the lone surrogate


def _publish(args: argparse.Namespace) -> int:
    from s3s3.errors import BacklogFull, NotReplicated
    from s3s3.queue.messages import preview, validate_key
    from s3s3.queue.producer import publish_keys

    settings = effective_settings(args)
    cfg = settings.redis
    rejected = 0
    keys = []
    for key in read_keys(args, sys.stdin):
        try:
            if isinstance(key, bytes):
                raise MessageError(f"key {preview(key)} is not UTF-8")
            keys.append(validate_key(key))
        except MessageError as exc:
            rejected += 1
            log.error("not announced: %s", exc)
    client = connect(cfg)
    try:
        n = publish_keys(client, cfg, keys, op=DELETE if args.delete else COPY)
    except (BacklogFull, NotReplicated) as exc:
        log.error("%s (%d keys were announced before it)", exc, exc.added)
        return _cli.EXIT_FATAL
    except redis.RedisError as exc:
        log.error("%s", _cli.redis_error(cfg, exc))
        return _cli.EXIT_FATAL
    finally:
        client.close()
    where = cfg.stream if Mode(cfg.mode) is Mode.STREAM else f"channel {cfg.channel!r}"
    log.info("announced %d keys on %s%s", n, where, f" ({rejected} rejected)" if rejected else "")
    return _cli.EXIT_FAILURES if rejected else _cli.EXIT_OK


def _bridge(args: argparse.Namespace) -> int:
    from s3s3.errors import RedisFatal
    from s3s3.queue.bridge import run_bridge
    from s3s3.queue.link import RedisLink, daemon_client

    cfg = effective_settings(args).redis
    stop = threading.Event()

    def handler(_signum, _frame) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    counts: dict = {}
    try:
        run_bridge(daemon_client(cfg), cfg, stop=stop, link=RedisLink(cfg.safe_url), counts=counts)
    except RedisFatal as exc:
        log.error("%s", exc)
        return _cli.EXIT_FATAL
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    log.info(
        "bridge stopped: %d messages added to %s, %d dropped",
        counts.get("bridged", 0),
        cfg.stream,
        counts.get("dropped", 0),
    )
    return _cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args)
    if args.bridge and args.keys:
        log.error("--bridge takes no keys")
        return _cli.EXIT_FATAL
    return _cli.run(_bridge if args.bridge else _publish, args)


if __name__ == "__main__":
    sys.exit(main())
