"""What every console script shares: the --config option, logging, and exit codes.

Exit codes: 0 all in step, 1 some objects failed, 2 configuration or fatal error.

Logs go to stderr as text (``TIME LEVEL LOGGER: message``) or, with ``[logging] format =
json`` or ``--log-format json``, as one JSON object a line (:class:`JsonFormatter`): ``time``
(ISO 8601, UTC), ``level``, ``logger``, ``message``, plus the fields a line was given with
``extra=`` (the per-key lines: ``key``, ``destination``, ``outcome``, ``bytes``,
``duration_s``, ``attempts``, ``error``...) and ``traceback`` when there is one. The option
wins over the INI; lines logged before the INI is read (a configuration error) follow the
option, or text without it.

Every log record, botocore's and redis-py's at ``-vv`` included, passes through one
:class:`~s3s3.redact.RedactingFilter`: URLs lose their passwords and secret query values, and
the secrets known from the environment (at start) and from the INI (once it is read) are
replaced by ``***``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
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
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text (the default) or json: one JSON object a line; overrides [logging] format",
    )
    return p


def add_limit_options(p: argparse.ArgumentParser, *, section: str) -> None:
    """``--bwlimit``, ``--tpslimit`` and ``--tpslimit-burst``, which :func:`apply_limits`
    lays over the INI (``section`` holds the script's ``bwlimit``)."""
    p.add_argument(
        "--bwlimit",
        metavar="RATE_OR_TIMETABLE",
        help="bytes per second read from GET bodies by this process, in rclone's syntax: "
        "10M, 512k, off, or a timetable such as '08:00,512k 18:00,10M 23:00,off' "
        f"(days: 'Mon-08:00,1M'); overrides 'bwlimit' in [{section}]",
    )
    p.add_argument(
        "--tpslimit",
        metavar="N",
        help="requests per second toward each endpoint (0: no limit); overrides "
        "'tpslimit' in every endpoint section",
    )
    p.add_argument(
        "--tpslimit-burst",
        metavar="N",
        help="requests that may go at once after a quiet spell (default 1); overrides "
        "'tpslimit_burst' in every endpoint section",
    )


def _number_option(args, name: str, convert, low: float, high: float, between: str):
    """The command line's ``--NAME`` converted and checked, or None when not given."""
    raw = getattr(args, name, None)
    if raw is None:
        return None
    flag = "--" + name.replace("_", "-")
    try:
        value = convert(raw)
    except ValueError as exc:
        raise ConfigError(f"{flag} {raw!r} {exc}") from None
    if not low <= value <= high:
        raise ConfigError(f"{flag} {raw!r} must be between {between}")
    return value


def apply_limits(settings: config.Settings, args: argparse.Namespace) -> config.Settings:
    """``settings`` with the command line's ``--bwlimit`` (for both [bucket] and
    [listen]: one process runs one of them) and ``--tpslimit``/``--tpslimit-burst`` (for
    every endpoint, as rclone's ``--tpslimit``) laid over; a bad value is a ConfigError
    naming the option."""
    bwlimit = getattr(args, "bwlimit", None)
    if bwlimit is not None:
        try:
            timetable = config.to_bwlimit(bwlimit)
        except ValueError as exc:
            raise ConfigError(f"--bwlimit {bwlimit!r} {exc}") from None
        settings = dataclasses.replace(
            settings,
            bucket=dataclasses.replace(settings.bucket, bwlimit=timetable),
            listen=dataclasses.replace(settings.listen, bwlimit=timetable),
        )
    rate = _number_option(
        args, "tpslimit", config.to_float, 0, config.MAX_TPS, "0 (no limit) and 100000"
    )
    burst = _number_option(
        args, "tpslimit_burst", config.to_int, 1, config.MAX_WORKERS, f"1 and {config.MAX_WORKERS}"
    )
    count = None if burst is None else int(burst)

    def limited(endpoint: config.EndpointConfig) -> config.EndpointConfig:
        return dataclasses.replace(
            endpoint,
            tpslimit=endpoint.tpslimit if rate is None else rate,
            tpslimit_burst=endpoint.tpslimit_burst if count is None else count,
        )

    if rate is not None or count is not None:
        settings = dataclasses.replace(
            settings,
            source=limited(settings.source),
            destinations=tuple(limited(d) for d in settings.destinations),
        )
    return settings


LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: What every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the record's extra fields.

    The handler's :class:`~s3s3.redact.RedactingFilter` has already redacted the message and
    the traceback; the extra fields are redacted here with its secrets, since a field such
    as ``error`` may quote a URL or a configured secret.
    """

    def __init__(self, redactor: RedactingFilter | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def _clean(self, value: object) -> object:
        if isinstance(value, str):
            return redact(value, self.redactor.secrets if self.redactor else ())
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (list, tuple)):
            return [self._clean(v) for v in value]
        if isinstance(value, dict):
            return {str(k): self._clean(v) for k, v in value.items()}
        return self._clean(str(value))

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        doc: dict[str, object] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_") and name not in doc:
                doc[name] = self._clean(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(
                self.formatException(record.exc_info),
                self.redactor.secrets if self.redactor else (),
            )
        if record.exc_text:
            doc["traceback"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False)


def use_log_format(log_format: str) -> None:
    """Give every root handler the formatter of ``log_format`` (text or json)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            JsonFormatter(redactor) if log_format == "json" else logging.Formatter(TEXT_FORMAT)
        )


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format=TEXT_FORMAT)
    if args.verbose < 2:
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # pika logs every failed connect at ERROR with a traceback; the AMQP intake logs
        # each outage once itself.
        logging.getLogger("pika").setLevel(logging.CRITICAL)
    install_redaction(config.secrets_in_environment(os.environ))
    if getattr(args, "log_format", None) == "json":
        use_log_format("json")


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
    if getattr(args, "log_format", None) is None and settings.log_format != "text":
        use_log_format(settings.log_format)
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
