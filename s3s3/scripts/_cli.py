"""What every console script shares: the --config option, logging, and exit codes.

Exit codes: 0 all in step, 1 some objects failed, 2 configuration or fatal error.

Every log record, botocore's and redis-py's at ``-vv`` included, passes through one
:class:`~s3s3.redact.RedactingFilter`: URLs lose their passwords and secret query values, and
the secrets known from the environment (at start) and from the INI (once it is read) are
replaced by ``***``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from s3s3 import config
from s3s3.errors import ConfigError, FatalEndpointError, LockHeld
from s3s3.redact import RedactingFilter, redact

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_FATAL = 2

log = logging.getLogger("s3s3")

#: The filter on every handler of the root logger; made by :func:`setup_logging`.
redactor: RedactingFilter | None = None


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--config",
        metavar="FILE",
        help="INI file, read after the default search path "
        "(/usr/local/etc/s3s3.ini, then s3s3.ini beside the package, its "
        "parent folder and the current folder); its keys win",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv also logs botocore)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.verbose < 2:
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # pika logs every failed connect at ERROR with a traceback; the AMQP intake logs
        # each outage once itself.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    install_redaction(config.secrets_in_environment(os.environ))


def install_redaction(secrets=()) -> RedactingFilter:
    """Put the one redacting filter on every root handler (once each) and teach it
    ``secrets``."""
    global redactor
    if redactor is None:
        redactor = RedactingFilter()
    redactor.add(secrets)
    for handler in logging.getLogger().handlers:
        if redactor not in handler.filters:
            handler.addFilter(redactor)
    return redactor


def load_settings(args: argparse.Namespace) -> config.Settings:
    settings = config.load(args.config)
    install_redaction(settings.secrets())
    log.info("configuration read from %s", ", ".join(settings.files))
    return settings


def redis_error(cfg: config.RedisConfig, exc: BaseException) -> str:
    """``Redis at URL: Type: message`` for a redis-py error, redacted (URL and message)."""
    return redact(f"Redis at {cfg.safe_url}: {type(exc).__name__}: {exc}", cfg.secrets())


def run(main_body, args: argparse.Namespace) -> int:
    """Run ``main_body(args)`` and map what escapes it to an exit code and one log line."""
    try:
        return main_body(args)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_FATAL
    except FatalEndpointError as exc:
        log.error("fatal: %s", exc)
        return EXIT_FATAL
    except LockHeld as exc:
        log.error("%s", exc)
        return EXIT_FATAL
    except KeyboardInterrupt:
        log.warning("interrupted")
        return EXIT_FAILURES
