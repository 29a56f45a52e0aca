"""``s3s3intake``: where stores push their event notifications on the way to the listeners.

    s3s3intake [--config FILE] [-v | -q]

It serves ``[http]`` (Ceph RGW and MinIO webhook POSTs, AWS SNS) and consumes ``[amqp]`` (an
AMQP 0.9.1 queue RGW or MinIO publish to), whichever the INI has, and adds every record to
the stream that ``s3s3listen`` reads (``[pubsub] mode = stream``). A sender is acknowledged
only after its records are in Redis. It is its own process, not a part of ``s3s3listen``,
so that restarting a listener (a deploy, a crash, a long grace) never refuses a push: Ceph's
synchronous topics drop what they cannot deliver.

Exit codes: 0 after SIGTERM/SIGINT; 2 on a configuration error, an address already in use,
or Redis or the broker refusing s3s3's credentials; 3 when an intake thread died of an
unexpected exception (a bug: logged with its traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from s3s3 import config
from s3s3.errors import BrokerRefused, ConfigError, RedisFatal
from s3s3.queue.contract import Mode, Push
from s3s3.queue.tally import Tally
from s3s3.scripts import _cli

log = logging.getLogger("s3s3.intake")

EXIT_CRASH = 3
#: How long serving threads get to finish the requests in hand after a stop.
CLOSE_WAIT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    return _cli.parser(
        "s3s3intake",
        "Take S3 event notifications pushed over HTTP or AMQP (Ceph RGW, MinIO, AWS SNS) "
        "into the stream the listeners read.",
    )


def build_intakes(settings: config.Settings, tally: Tally | None = None) -> list[Push]:
    """The intakes ``settings`` configure, sharing one Redis client and counting into
    ``tally``; none is opened yet."""
    if settings.http is None and settings.amqp is None:
        raise ConfigError(
            "nothing to serve: add an [http] section (a token, and host and port) or an "
            "[amqp] section (url and queue)",
            path=settings.files[-1] if settings.files else None,
        )
    if Mode(settings.redis.mode) is not Mode.STREAM:
        raise ConfigError(
            "s3s3intake adds events to the stream: set 'mode = stream' in [pubsub] "
            "(and run the listeners in stream mode)",
            path=settings.files[-1] if settings.files else None,
            section="pubsub",
            key="mode",
        )
    from s3s3.queue.announce import Announcer
    from s3s3.queue.link import daemon_client

    client = daemon_client(settings.redis, socket_timeout_s=5.0)
    tally = tally if tally is not None else Tally()

    def announcer(via: str) -> Announcer:
        return Announcer(
            client,
            settings.redis,
            via=via,
            tally=tally,
            source_bucket=settings.source.bucket,
            key_encoding=settings.listen.event_key_encoding,
        )

    intakes: list[Push] = []
    if settings.http is not None:
        from s3s3.queue.http_intake import HttpIntake

        intakes.append(HttpIntake(settings.http, announcer("http"), tally=tally))
    if settings.amqp is not None:
        try:
            from s3s3.queue.amqp_intake import AmqpIntake
        except ImportError as exc:
            raise ConfigError(
                f"[amqp] needs the pika library ({exc}): pip install 's3s3[amqp]'",
                section="amqp",
            ) from None
        intakes.append(AmqpIntake(settings.amqp, announcer("amqp"), tally=tally))
    return intakes


def run_intake(settings: config.Settings, *, stop: threading.Event | None = None) -> int:
    """Serve every configured intake until ``stop`` is set or a signal arrives; returns
    the exit code. Signal handlers are installed only from the main thread."""
    stop = stop or threading.Event()
    tally = Tally()
    intakes = build_intakes(settings, tally)
    served = None
    if settings.metrics.intake is not None:
        from s3s3.metrics.wiring import intake_server

        def redis_problem() -> str | None:
            problems = [p for p in (i.problem() for i in intakes) if p]
            return problems[0] if problems else None

        served = intake_server(settings, tally, redis_problem)
        served.start()
    try:
        return _serve(intakes, stop)
    finally:
        if served is not None:
            served.stop()


def _serve(intakes: list[Push], stop: threading.Event) -> int:
    for intake in intakes:
        try:
            intake.open()
        except OSError as exc:
            log.error("cannot open %s: %s", intake.describe(), exc)
            return _cli.EXIT_FATAL
    outcome: dict[str, int] = {}

    def serve(intake: Push) -> None:
        try:
            intake.serve(stop)
        except (RedisFatal, BrokerRefused) as exc:
            log.error("fatal: %s", exc)
            outcome.setdefault("code", _cli.EXIT_FATAL)
        except BaseException:
            log.exception("%s crashed", intake.describe())
            outcome.setdefault("code", EXIT_CRASH)
        finally:
            stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:

        def handler(signum: int, _frame: object) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    threads = [
        threading.Thread(target=serve, args=(i,), name=f"s3s3-intake-{n}", daemon=True)
        for n, i in enumerate(intakes)
    ]
    try:
        for thread in threads:
            thread.start()
        for intake in intakes:
            log.info("s3s3intake: taking events from %s", intake.describe())
        while not stop.wait(1.0):
            pass
        for thread in threads:
            thread.join(CLOSE_WAIT_S)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    code = outcome.get("code", _cli.EXIT_OK)
    log.info("s3s3intake stopped (exit code %d)", code)
    return code


def _main_body(args: argparse.Namespace) -> int:
    return run_intake(_cli.load_settings(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _cli.setup_logging(args)
    return _cli.run(_main_body, args)


if __name__ == "__main__":
    sys.exit(main())
