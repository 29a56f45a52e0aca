"""Read s3s3.ini into frozen settings.

The INI format is the 2015 one, extended: ``[source]``, one section per destination whose
name starts with ``dest``, ``[pubsub]`` for Redis, and the new ``[listen]`` and ``[bucket]``
sections. Nothing is read at import; call :func:`load`. Every error names the file, the
section, the key and the value (secrets excepted).

The module-level ``source``, ``destinations`` and ``pubsub`` dicts and :func:`initialize`
are kept for scripts written against the 2015 package.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from s3s3.errors import ConfigError
from s3s3.model import MAX_MESSAGE_BYTES
from s3s3.redact import redact_url, url_secrets

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_BYTES = 5 * MiB
MAX_PART_BYTES = 5 * GiB
MAX_SINGLE_PUT_BYTES = 5 * GiB

PACKAGE_DIR = Path(__file__).resolve().parent


def default_search_path() -> list[Path]:
    """Where the 2015 s3s3 looked for its INI, in the order it read them (later wins)."""
    return [
        Path("/usr/local/etc/s3s3.ini"),
        PACKAGE_DIR / "s3s3.ini",
        PACKAGE_DIR.parent / "s3s3.ini",
        Path.cwd() / "s3s3.ini",
    ]


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EndpointConfig:
    """One S3 endpoint and bucket: the source or a destination."""

    name: str
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    signature_version: str = "s3v4"
    addressing_style: str = "path"
    verify_tls: bool = True
    ca_bundle: str | None = None
    multipart_threshold_bytes: int = 1 * GiB
    multipart_chunksize_bytes: int = 64 * MiB
    list_version: int = 2
    max_pool_connections: int = 64
    verify_md5: bool = False
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    # Tries of one operation toward this endpoint (a key's copy, a listing page, a delete
    # batch), the first included, within retry_deadline_s of the first (s3s3.retry).
    max_attempts: int = 5
    retry_deadline_s: float = 300.0
    # "raw": per-object calls go through s3s3.store.lean (http.client, s3s3.store.signing);
    # "botocore": every call goes through boto3, the opt-out should a server need it.
    data_path: str = "raw"
    # Multipart uploads of s3s3's own older than this are aborted when a listener starts
    # (uploads a killed copy left behind); 0 = never sweep.
    abort_uploads_after_s: float = 86400.0
    # On the source: how far (bytes) the destinations sharing one GET may drift apart
    # before the slowest drops out and reads on its own (s3s3.fanout); 0 = one GET each.
    fanout_buffer_bytes: int = 64 * MiB
    # Requests per second toward this endpoint (0: no limit), and how many may go at once
    # after a quiet spell (rclone's --tpslimit and --tpslimit-burst); s3s3.store.pacing.
    tpslimit: float = 0.0
    tpslimit_burst: int = 1
    # Where the progress of multipart uploads to this endpoint is kept, so an interrupted
    # copy resumes (s3s3.resume): "" = $XDG_STATE_HOME/s3s3/uploads or
    # ~/.local/state/s3s3/uploads; "none" = keep none (a failed copy aborts its upload);
    # "redis" = in [pubsub]'s Redis (upload_state_redis), shared by a fleet of listeners.
    upload_state: str = ""
    upload_state_redis: RedisConfig | None = field(default=None, repr=False)
    # On the source: replicate every version of a versioned bucket, oldest first, not only
    # the latest (s3s3.replay); with delete_markers, the source's delete markers too, as
    # deletes at the destination (AWS replication's DeleteMarkerReplication).
    versions: bool = False
    delete_markers: bool = False

    @property
    def multipart_enabled(self) -> bool:
        return self.multipart_threshold_bytes > 0

    def describe(self) -> str:
        """A log-safe one-liner: section, URL and bucket, never credentials."""
        return f"[{self.name}] {self.endpoint_url or 'AWS'} bucket {self.bucket}"


def verifies_md5(
    source: EndpointConfig, destination: EndpointConfig, *, asked: bool = False
) -> bool:
    """Whether a key whose md5 one side does not show is read to compare it: the one rule,
    asked for by the caller (``--verify-md5``, ``upload(verify_md5=True)``) or set on either
    endpoint (``verify_md5 = True``)."""
    return asked or source.verify_md5 or destination.verify_md5


#: Days as rclone's timetable names them, Monday first (``datetime.weekday()``).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    **{d: i for i, d in enumerate(WEEKDAYS)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
MINUTES_A_WEEK = 7 * 1440


@dataclass(frozen=True)
class RateSlot:
    """One entry of a bandwidth timetable: from ``minute`` (of the day) of ``weekday``
    (0 = Monday; None: every day) on, ``rate_bytes_s`` applies (None: no limit)."""

    weekday: int | None
    minute: int
    rate_bytes_s: float | None


@dataclass(frozen=True)
class BwTimetable:
    """A ``bwlimit``: one rate, or rclone's timetable of rates by time of day and weekday.

    Empty (the default): no limit. An entry applies from its time until the next entry's;
    before the first entry of the week the last one still applies (the week wraps), and an
    entry without a day applies on every day, as in rclone.
    """

    slots: tuple[RateSlot, ...] = ()
    text: str = "off"

    @property
    def is_off(self) -> bool:
        return all(slot.rate_bytes_s is None for slot in self.slots)

    def _week(self) -> list[tuple[int, float | None, RateSlot]]:
        week = []
        for slot in self.slots:
            days = range(7) if slot.weekday is None else (slot.weekday,)
            week += [(day * 1440 + slot.minute, slot.rate_bytes_s, slot) for day in days]
        # Stable: of two entries for the same minute, the later written wins.
        week.sort(key=lambda item: item[0])
        return week

    def slot_at(self, when: datetime) -> RateSlot | None:
        """The entry in force at local time ``when`` (None: no entry, no limit)."""
        week = self._week()
        if not week:
            return None
        now = when.weekday() * 1440 + when.hour * 60 + when.minute
        current = week[-1][2]  # before the week's first entry: the last one, wrapped
        for minute, _rate, slot in week:
            if minute > now:
                break
            current = slot
        return current

    def rate_at(self, when: datetime) -> float | None:
        """Bytes per second allowed at local time ``when``, or None for no limit."""
        slot = self.slot_at(when)
        return None if slot is None else slot.rate_bytes_s


NO_BWLIMIT = BwTimetable()


@dataclass(frozen=True)
class RedisConfig:
    """``[pubsub]``: where keys are announced and how they are consumed."""

    url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    channel: str = "backup"
    mode: str = "pubsub"  # pubsub | stream
    stream: str = "s3s3:{backup}:stream"
    group: str = "s3s3"
    consumer: str = ""
    dead_letter_stream: str = "s3s3:{backup}:dead"
    max_deliveries: int = 5
    reclaim_idle_s: float = 300.0
    maxlen: int = 1_000_000
    list_key: str | None = None  # a MinIO Redis target list to drain into the stream
    marker_keys: bool = True  # SET backup=>KEY after each copy, as in 2015
    # Streams the work is spread over (s3s3.queue.shards names them); 1: the one stream.
    shards: int = 1
    cluster: bool = False  # the URL names one node of a Redis Cluster
    cluster_nodes: tuple[tuple[str, int], ...] = ()  # more start-up nodes (host, port)
    wait_replicas: int = 0  # producers WAIT for this many replicas after each XADD batch
    wait_timeout_s: float = 1.0  # how long that WAIT may take

    @property
    def safe_url(self) -> str:
        """The URL with its password and secret query values masked, for logs."""
        return redact_url(self.url)

    def secrets(self) -> tuple[str, ...]:
        """The password, given as a key or inside the URL (userinfo or ``?password=``)."""
        return tuple(s for s in (self.password, *url_secrets(self.url)) if s)


@dataclass(frozen=True)
class ListenConfig:
    """``[listen]``: the real-time daemon."""

    workers: int = 32
    grace_s: float = 30.0
    delete: bool = False
    summary_interval_s: float = 60.0
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    # How keys in S3 event records are encoded: "auto" decodes them (AWS, MinIO: URL-encoded,
    # + for space) except from Ceph RGW, which sends them raw; "url" or "raw" force one way.
    event_key_encoding: str = "auto"
    # Bytes per second read from GET bodies by this process (rclone's --bwlimit syntax).
    bwlimit: BwTimetable = NO_BWLIMIT


@dataclass(frozen=True)
class BucketConfig:
    """``[bucket]``: the periodic whole-bucket job."""

    workers: int = 32
    prefix: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    delete: bool = False
    max_delete_fraction: float = 0.5
    size_only: bool = False
    lock: str = "auto"  # auto | redis | local | none
    lock_ttl_s: float = 3600.0
    lock_dir: str = "/tmp"
    progress_interval_s: float = 30.0
    grace_s: float = 30.0  # after SIGTERM, then copies in flight are cancelled (aborted)
    # Bytes per second read from GET bodies by this process (rclone's --bwlimit syntax).
    bwlimit: BwTimetable = NO_BWLIMIT
    # Listing requests at once per side (source, each destination); 1: one page at a time.
    list_concurrency: int = 8


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: the HTTP intake of ``s3s3intake``, where stores POST event notifications."""

    token: str = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8089
    tls_cert: str | None = None
    tls_key: str | None = None
    max_body: int = 256 * 1024
    max_connections: int = 64
    timeout_s: float = 30.0

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True)
class AmqpConfig:
    """``[amqp]``: the AMQP 0.9.1 queue ``s3s3intake`` consumes event notifications from."""

    url: str = field(default="amqp://guest:guest@127.0.0.1:5672/%2F", repr=False)
    queue: str = "s3s3"
    exchange: str | None = None
    exchange_type: str = "topic"
    routing_key: str = "#"
    declare: bool = True
    prefetch: int = 64

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where each script shows what it does (every key off unless set)."""

    #: (host, first port, last port): the first free port of the range is taken
    listen: tuple[str, int, int] | None = None  # s3s3listen: /metrics, /healthz, /readyz
    intake: tuple[str, int, int] | None = None  # s3s3intake: /metrics, /healthz, /readyz
    textfile: str | None = None  # s3s3bucket: node_exporter's textfile format, written here
    #: s3s3bucket pushes there; user:password@ in it is basic auth (hence no repr).
    pushgateway: str | None = field(default=None, repr=False)
    job: str = "s3s3bucket"  # the Pushgateway's job label
    #: How often s3s3bucket runs (cron, supervisord's TICK): the staleness alert uses it.
    period_s: float = 3600.0


@dataclass(frozen=True)
class Settings:
    """Everything read from the INI files."""

    source: EndpointConfig
    destinations: tuple[EndpointConfig, ...]
    redis: RedisConfig = RedisConfig()
    listen: ListenConfig = ListenConfig()
    bucket: BucketConfig = BucketConfig()
    http: HttpConfig | None = None
    amqp: AmqpConfig | None = None
    metrics: MetricsConfig = MetricsConfig()
    log_format: str = "text"  # [logging] format: text | json (one object a line)
    files: tuple[str, ...] = ()

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in the settings, for redaction (:mod:`s3s3.redact`): the
        endpoints' secret keys, the Redis password, the HTTP intake's token and the AMQP
        password."""
        found = [e.secret_key for e in (self.source, *self.destinations)]
        if self.http is not None:
            found.append(self.http.token)
        if self.amqp is not None:
            found += url_secrets(self.amqp.url)
        found += url_secrets(self.metrics.pushgateway)
        return tuple(s for s in (*found, *self.redis.secrets()) if s)


# --------------------------------------------------------------------------- converters

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}
_INT = re.compile(r"^\s*[+-]?\d+\s*$")
_DURATION = re.compile(r"^\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")
_DURATION_FACTOR = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: The longest duration any key takes: longer is a typo, and sleeping on it would overflow.
MAX_DURATION_S = 366 * 86400.0
MAX_WORKERS = 1024
MAX_POOL_CONNECTIONS = 1024
MAX_ATTEMPTS = 100
MAX_TPS = 100_000.0
MAX_DELIVERIES = 1000
MAX_STREAM_LEN = 10**12
#: Each shard is a reader and a writer thread in every listener: past this, use fewer.
MAX_SHARDS = 128


def to_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("is not a valid boolean")


def to_size(value: str) -> int:
    """``8388608``, ``8M``, ``8MiB`` and ``8MB`` all mean 8 MiB (sizes are binary)."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError("is not a valid size (examples: 0, 8388608, 64MiB, 1GiB)")
    size = float(m.group(1)) * _SIZE_FACTOR[m.group(2).lower()]
    if not math.isfinite(size):
        raise ValueError("is too large to be a size")
    return int(size)


def to_int(value: str) -> int:
    """A whole number written in decimal digits (no ``1_000``, no ``1e3``, no ``8.0``)."""
    if not _INT.match(value):
        raise ValueError("is not a valid integer")
    try:
        return int(value.strip())
    except ValueError:  # more digits than int() takes (sys.get_int_max_str_digits)
        raise ValueError("is not a valid integer (too many digits)") from None


def to_float(value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("is not a valid number") from None
    if not math.isfinite(number):
        raise ValueError("is not a finite number")
    return number


def to_duration(value: str) -> float:
    """Seconds: ``90`` and ``0.5`` (plain seconds, as every duration key took before),
    ``30s``, ``15m``, ``24h``, ``7d``. A negative value is returned for the caller to refuse
    with the key's own bound; ``nan``, ``inf`` and exponents are not durations."""
    m = _DURATION.match(value)
    if not m:
        raise ValueError("is not a valid duration (examples: 90, 0.5, 30s, 15m, 24h, 7d)")
    seconds = float(m.group(2)) * _DURATION_FACTOR[m.group(3)]
    return -seconds if m.group(1) == "-" else seconds


def to_port(value: str) -> int:
    port = to_int(value)
    if not 1 <= port <= 65535:
        raise ValueError("is not a port number (1 to 65535)")
    return port


def to_list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"[,\n]", value) if p.strip())


#: rclone's rate suffixes, in powers of 1024; a bare number is KiB/s, as in rclone.
_RATE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)([bkmgtp]?)(?:ib?|b)?(?:/s)?$", re.IGNORECASE)
_RATE_FACTOR = {"b": 1, "": 1024, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB, "p": MiB * MiB}
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_BWLIMIT_HELP = (
    "(a rate such as 512k, 10M or off, or a timetable such as "
    "'08:00,512k 18:00,10M 23:00,off' or 'Mon-08:00,1M Sat-00:00,off')"
)


def to_rate(value: str) -> float | None:
    """A bandwidth in rclone's words: bytes per second, or None for ``off``.

    ``10M`` is 10 MiB/s, ``512k`` 512 KiB/s, ``100B`` 100 bytes/s; suffixes B, K, M, G, T,
    P are powers of 1024 (``Ki``, ``KiB`` and a trailing ``/s`` are taken too); a bare number
    is KiB/s, as rclone reads it. ``off`` and ``0`` mean no limit.
    """
    text = value.strip()
    if text.lower() in ("off", "", "0"):
        return None
    if ":" in text:
        raise ValueError(
            "uses rclone's UP:DOWN form, which s3s3 does not take: s3s3 limits one "
            "direction only, the bytes it reads from GET bodies (each source read once, "
            "however many destinations it feeds); give one rate"
        )
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"is not a rate {_BWLIMIT_HELP}")
    rate = float(m.group(1)) * _RATE_FACTOR[m.group(2).lower()]
    if not math.isfinite(rate) or rate > 2**62:
        raise ValueError("is too large to be a rate")
    return None if rate == 0 else rate


def _rate_slot(entry: str) -> RateSlot:
    when, comma, rate_text = entry.partition(",")
    if not comma:
        raise ValueError(f"has an entry {entry!r} that is not TIME,RATE {_BWLIMIT_HELP}")
    weekday = None
    day, dash, hhmm = when.partition("-")
    if dash:
        if day.lower() not in _WEEKDAY_NAMES:
            raise ValueError(f"has an entry {entry!r} whose day {day!r} is not Mon, Tue... Sun")
        weekday = _WEEKDAY_NAMES[day.lower()]
    else:
        hhmm = when
    m = _HHMM.match(hhmm)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"has an entry {entry!r} whose time {hhmm!r} is not HH:MM (00:00-23:59)")
    try:
        rate = to_rate(rate_text)
    except ValueError as exc:
        raise ValueError(f"has an entry {entry!r} whose rate {rate_text!r} {exc}") from None
    return RateSlot(weekday, int(m.group(1)) * 60 + int(m.group(2)), rate)


def to_bwlimit(value: str) -> BwTimetable:
    """A ``bwlimit`` in rclone's syntax: one rate (:func:`to_rate`), or a timetable of
    ``[DAY-]HH:MM,RATE`` entries separated by spaces or semicolons."""
    text = value.strip()
    entries = [e for e in re.split(r"[\s;]+", text) if e]
    if len(entries) == 1 and "," not in entries[0]:
        rate = to_rate(entries[0])
        return BwTimetable((RateSlot(None, 0, rate),) if rate is not None else (), text or "off")
    if not entries:
        return NO_BWLIMIT
    return BwTimetable(tuple(_rate_slot(e) for e in entries), " ".join(entries))


def describe_rate(rate_bytes_s: float | None) -> str:
    """A rate for a log line: ``off``, ``512 KiB/s``, ``10 MiB/s``."""
    if rate_bytes_s is None:
        return "off"
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if rate_bytes_s >= factor:
            return f"{rate_bytes_s / factor:g} {unit}/s"
    return f"{rate_bytes_s:g} B/s"


#: Kept for scripts that imported it: the one redaction function now masks URLs.
mask_url = redact_url


def http_url_problem(url: str) -> str | None:
    """What is wrong with an S3 ``endpoint_url``, or None. Never quotes the URL."""
    if not url:
        return "is empty (remove the key to use AWS)"
    if any(ch.isspace() for ch in url):
        return "contains white space"
    parts = _split(url)
    if isinstance(parts, str):
        return parts + _HTTP_IPV6_HINT
    if parts.scheme not in ("http", "https") or not url.lower().startswith(parts.scheme + "://"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host name"
    if "@" in parts.netloc:
        return (
            "must not hold a user name or password (credentials go in aws_access_key_id "
            "and aws_secret_access_key)"
        )
    problem = _port_and_host_problem(parts)
    if problem:
        return problem + (_HTTP_IPV6_HINT if problem == _NOT_IPV6 else "")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or a fragment"
    return None


_NOT_IPV6 = "has something in '[' ']' that is not an IPv6 address"
_HTTP_IPV6_HINT = " (an IPv6 address is written http://[::1]:8080)"
_REDIS_IPV6_HINT = " (an IPv6 address is written redis://[::1]:6379/0)"


def _split(url: str):
    """``urlsplit(url)``, or what is wrong with its brackets (urlsplit raises ValueError)."""
    try:
        return urlsplit(url)
    except ValueError:
        netloc = url.partition("://")[2].split("/", 1)[0]
        if netloc.count("[") == netloc.count("]") == 1:
            return _NOT_IPV6
        return "has unbalanced '[' ']'"


def _port_and_host_problem(parts) -> str | None:
    tail = parts.netloc.rpartition("@")[2].rsplit("]", 1)[-1]
    if ":" in tail and not tail.rpartition(":")[2].isdigit():
        # Digits only: Python 3.10's urlsplit would take "+80" or " 80" as port 80.
        return "has a port that is not a number from 1 to 65535"
    try:
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if port == 0 or parts.netloc.endswith(":") and port is None:
        return "has a port that is not a number from 1 to 65535"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(parts.hostname.split("%", 1)[0])
        except ValueError:
            return _NOT_IPV6
    return None


#: Query parameters redis-py reads from a URL, by the type it converts them to.
_REDIS_QUERY_INT = {
    "db",
    "socket_read_size",
    "max_connections",
    "health_check_interval",
    "ssl_min_version",
    "protocol",
}
_REDIS_QUERY_FLOAT = {"socket_timeout", "socket_connect_timeout", "timeout"}
_REDIS_QUERY_OTHER = {
    "socket_keepalive",
    "retry_on_timeout",
    "ssl_check_hostname",
    "legacy_responses",
    "password",
    "username",
    "client_name",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
}
_REDIS_QUERY = _REDIS_QUERY_INT | _REDIS_QUERY_FLOAT | _REDIS_QUERY_OTHER


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL as redis-py reads it, or None. Never quotes a value."""
    if not url:
        return "is empty"
    if any(ch.isspace() for ch in url):
        return "contains white space"
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix"):
        return "is not a redis://, rediss:// or unix:// URL"
    parts = _split(url)
    if isinstance(parts, str):
        return parts + _REDIS_IPV6_HINT
    if parts.fragment:
        return "must not have a fragment ('#...')"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _REDIS_QUERY:
            return (
                f"has an unknown query parameter {name!r} (known: "
                f"{', '.join(sorted(_REDIS_QUERY))})"
            )
        if name.startswith("ssl_") and scheme != "rediss":
            return f"has {name!r}, which only a rediss:// URL takes"
        if name in _REDIS_QUERY_INT and not _INT.match(value):
            return f"has a query parameter {name!r} that is not a whole number"
        if name in _REDIS_QUERY_FLOAT:
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not math.isfinite(number) or number <= 0:
                return f"has a query parameter {name!r} that is not a number of seconds above 0"
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            return "has no socket path (unix:///run/redis/redis.sock)"
        if parts.hostname:
            return (
                "names a host; a unix:// URL takes an absolute path after three slashes "
                "(unix:///run/redis/redis.sock)"
            )
        return None
    if not parts.hostname:
        return "has no host name"
    problem = _port_and_host_problem(parts)
    if problem:
        # Python 3.10's urlsplit accepts what 3.11+ refuses: the same words either way.
        return problem + (_REDIS_IPV6_HINT if problem == _NOT_IPV6 else "")
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        return "has a database number (the path, as in redis://host:6379/0) that is not a number"
    return None


# --------------------------------------------------------------------------- reading


class _Section:
    """One merged section: each value remembers the file it came from."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, tuple[str, str]] = {}

    def path_of(self, key: str | None = None) -> str:
        if key is not None and key in self.values:
            return self.values[key][1]
        return next(iter(self.values.values()))[1] if self.values else "?"


# configparser's own patterns, to find again the lines it names in an error.
_SECTCRE = configparser.ConfigParser.SECTCRE
_OPTCRE = configparser.ConfigParser.OPTCRE
_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def _new_parser() -> configparser.ConfigParser:
    # strict: a section or key twice in one file is an error (configparser names only the
    # second line; _first_line finds the first). No DEFAULT section: its keys would leak into
    # every section, so "[DEFAULT]" is an unknown section like any other.
    return configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=("#", ";"),
        strict=True,
        default_section="\x00no-default-section",
    )


def _logical(line: str) -> str:
    """A line without its comment, stripped, as configparser sees it for headers and keys."""
    stripped = line.strip()
    if stripped[:1] in ("#", ";"):
        return ""
    return re.split(r"\s[#;]", stripped, maxsplit=1)[0].strip()


def _section_at(lines: list[str], lineno: int) -> str | None:
    """The section that line ``lineno`` (1-based) belongs to."""
    current = None
    for line in lines[: lineno - 1]:
        m = _SECTCRE.match(_logical(line))
        if m:
            current = m.group("header")
    return current


def _first_line(
    lines: list[str], before: int, section: str, option: str | None = None
) -> int | None:
    """The line of the first ``[section]`` header (or of ``option`` within it) before line
    ``before``."""
    current = None
    for lineno, line in enumerate(lines[: before - 1], start=1):
        text = _logical(line)
        m = _SECTCRE.match(text)
        if m:
            current = m.group("header")
            if option is None and current == section:
                return lineno
            continue
        if option is not None and current == section:
            o = _OPTCRE.match(text)
            if o and o.group("option").strip().lower() == option:
                return lineno
    return None


def _known_word(line: str) -> str | None:
    """The key a malformed line was meant to set, when it is a key s3s3 knows: a known key's
    name is never a secret, whereas the first word of any other line may be one."""
    m = _WORD.match(line)
    return m.group(1).lower() if m and m.group(1).lower() in _ALL_KEYS else None


def _line_error(
    lines: list[str], lineno: int, what: str, path: str, more: Sequence[int] = ()
) -> ConfigError:
    """An error about one line that never quotes the line: it may hold a secret."""
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    key = _known_word(line)
    section = _section_at(lines, lineno)
    about = f" (key '{key}')" if key else ""
    extra = f"; also line{'s' if len(more) > 1 else ''} {', '.join(map(str, more))}" if more else ""
    message = f"line {lineno}{about} {what}{extra} (the line is not shown: it may hold a secret)"
    return ConfigError(message, path=path, section=section, key=key)


def _parse_file(path: Path) -> configparser.ConfigParser | None:
    """One file parsed strictly, or None when it does not exist; errors never quote a line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read configuration: {exc.strerror or type(exc).__name__}", path=str(path)
        ) from None
    try:
        # utf-8-sig: a file saved with a byte order mark (Windows editors) reads as UTF-8.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        lines = data.decode("utf-8", "replace").split("\n")
        raise _line_error(lines, lineno, "is not valid UTF-8", str(path)) from None
    lines = text.split("\n")  # as configparser counts lines (not splitlines)
    parser = _new_parser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateOptionError as exc:
        first = _first_line(lines, exc.lineno or 0, exc.section, exc.option)
        at = f"at lines {first} and {exc.lineno}" if first else f"again at line {exc.lineno}"
        raise ConfigError(
            f"duplicate key '{exc.option}' {at}",
            path=str(path),
            section=exc.section,
            key=exc.option,
        ) from None
    except configparser.DuplicateSectionError as exc:
        first = _first_line(lines, exc.lineno or 0, exc.section)
        at = f"at lines {first} and {exc.lineno}" if first else f"again at line {exc.lineno}"
        raise ConfigError(
            f"duplicate section '[{exc.section}]' {at} (merge them into one)",
            path=str(path),
            section=exc.section,
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise _line_error(
            lines, exc.lineno, "comes before any [section] header", str(path)
        ) from None
    except configparser.ParsingError as exc:
        numbers = [lineno for lineno, _line in exc.errors]
        raise _line_error(
            lines,
            numbers[0],
            "is not 'key = value', a [section] header or a comment",
            str(path),
            more=numbers[1:],
        ) from None
    except configparser.Error as exc:
        error_line: int | None = getattr(exc, "lineno", None)
        where = f" at line {error_line}" if error_line else ""
        raise ConfigError(
            f"cannot parse configuration{where} ({type(exc).__name__})", path=str(path)
        ) from None
    return parser


def _read_files(paths: Iterable[Path]) -> tuple[dict[str, _Section], list[str]]:
    sections: dict[str, _Section] = {}
    read: list[str] = []
    for path in paths:
        parser = _parse_file(Path(path))
        if parser is None:
            continue
        read.append(str(path))
        # Across files the 2015 rule holds: a later file's keys override an earlier one's.
        for name in parser.sections():
            sec = sections.setdefault(name, _Section(name))
            for key, value in parser.items(name):
                sec.values[key] = (value, str(path))
    return sections, read


class _Reader:
    """Typed access to one section that names file, section and key in every error."""

    def __init__(
        self,
        section: _Section,
        known: set[str],
        secrets: AbstractSet[str] = frozenset(),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.section = section
        self.secrets = secrets
        self.env = os.environ if env is None else env
        self.from_env: dict[str, str] = {}
        unknown = sorted(set(section.values) - known)
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"unknown key '{key}' (known keys: {', '.join(sorted(known))})",
                path=section.path_of(key),
                section=section.name,
                key=key,
            )

    def env_name(self, key: str) -> str:
        return "S3S3_" + re.sub(r"[^A-Za-z0-9]", "_", f"{self.section.name}_{key}").upper()

    def raw(self, key: str) -> str | None:
        if key in self.secrets:
            name = self.env_name(key)
            from_env = self.env.get(name)
            if from_env:
                self.from_env[key] = name
                return from_env
        item = self.section.values.get(key)
        return None if item is None else item[0]

    def shown(self, key: str) -> str:
        """The value of ``key`` as an error may quote it."""
        return "<secret>" if key in self.secrets else repr(self.raw(key))

    def error(self, key: str, message: str) -> ConfigError:
        if key in self.from_env:
            # The value came from the environment: say so, not the file.
            return ConfigError(
                f"{message} (from environment variable {self.from_env[key]})",
                section=self.section.name,
                key=key,
            )
        return ConfigError(
            message, path=self.section.path_of(key), section=self.section.name, key=key
        )

    def get(self, key: str, convert: Callable[[str], object] = str, default=None):
        value = self.raw(key)
        if value is None or (value.strip() == "" and convert is not str):
            return default
        try:
            return convert(value)
        except ValueError as exc:
            raise self.error(key, f"value {self.shown(key)} for '{key}' {exc}") from None

    def choice(self, key: str, choices: Mapping[str, str], default: str) -> str:
        value = self.raw(key)
        if value is None or not value.strip():
            return default
        normalised = value.strip()
        if normalised in choices:
            return choices[normalised]
        raise self.error(
            key, f"value {value!r} for '{key}' is not one of {', '.join(sorted(set(choices)))}"
        )

    def positive(
        self,
        key: str,
        convert,
        default,
        *,
        allow_zero: bool = False,
        maximum=None,
        maximum_text: str | None = None,
    ):
        value = self.get(key, convert, default)
        if value is None:
            return None
        if value < 0 or (value == 0 and not allow_zero):
            raise self.error(
                key,
                f"value {self.shown(key)} for '{key}' must be "
                f"{'zero or more' if allow_zero else 'greater than zero'}",
            )
        if maximum is not None and value > maximum:
            raise self.error(
                key,
                f"value {self.shown(key)} for '{key}' must be at most {maximum_text or maximum}",
            )
        return value

    def count(self, key: str, default: int, *, maximum: int, allow_zero: bool = False) -> int:
        """A whole number of things, from 1 (or 0) to ``maximum``."""
        return self.positive(key, to_int, default, allow_zero=allow_zero, maximum=maximum)

    def duration(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """Seconds (``90``, ``30s``, ``15m``, ``24h``, ``7d``), finite, at most a year."""
        return self.positive(
            key,
            to_duration,
            default,
            allow_zero=allow_zero,
            maximum=MAX_DURATION_S,
            maximum_text="366d",
        )

    def nonblank(self, key: str) -> str | None:
        """A string value that, when the key is given, must not be empty."""
        value = self.raw(key)
        if value is None:
            return None
        if not value.strip():
            raise self.error(key, f"'{key}' is empty (give it a value or remove the line)")
        return value.strip()


_ENDPOINT_KEYS = {
    "aws_access_key_id",
    "aws_secret_access_key",
    "bucket_name",
    "host",
    "port",
    "is_secure",
    "calling_format",
    "verify_md5",
    "endpoint_url",
    "region",
    "signature_version",
    "addressing_style",
    "verify_tls",
    "ca_bundle",
    "multipart_threshold",
    "multipart_chunksize",
    "list_version",
    "max_pool_connections",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "retry_deadline",
    "data_path",
    "abort_uploads_after",
    "fanout_buffer",
    "tpslimit",
    "tpslimit_burst",
    "upload_state",
    "versions",
    "delete_markers",
}
#: Keys that only the source section reads.
_SOURCE_ONLY_KEYS = ("versions", "delete_markers")
_CALLING_FORMATS = {
    "OrdinaryCallingFormat": "path",
    "SubdomainCallingFormat": "virtual",
    "boto.s3.connection.OrdinaryCallingFormat": "path",
    "boto.s3.connection.SubdomainCallingFormat": "virtual",
}


def _url_host(r: _Reader, host: str, *, url_key: str) -> str:
    """``host`` as it goes into a URL (an IPv6 address gets its brackets); the error names
    ``host`` for anything that is not a host name."""
    if any(ch.isspace() or ch in "/@?#" for ch in host):
        raise r.error(
            "host", f"value {host!r} for 'host' is not a host name (a URL goes in '{url_key}')"
        )
    if ":" in host and not host.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise r.error(
                "host", f"value {host!r} for 'host' is not a host name (the port goes in 'port')"
            ) from None
        host = f"[{host}]"
    return host


def _host_url(r: _Reader, host: str, *, is_secure: bool) -> str:
    """``host`` (and ``port``) as an endpoint URL; an IPv6 address gets its brackets."""
    port = r.get("port", to_port, None)
    host = _url_host(r, host, url_key="endpoint_url")
    url = f"{'https' if is_secure else 'http'}://{host}" + (f":{port}" if port else "")
    problem = http_url_problem(url)
    if problem:
        raise r.error("host", f"value {host!r} for 'host' makes an endpoint URL that {problem}")
    return url


def _endpoint(section: _Section, env: Mapping[str, str] | None) -> EndpointConfig:
    r = _Reader(section, _ENDPOINT_KEYS, {"aws_access_key_id", "aws_secret_access_key"}, env)
    bucket = r.get("bucket_name")
    if not bucket or not bucket.strip():
        raise ConfigError(
            "missing required key 'bucket_name'",
            path=section.path_of(),
            section=section.name,
            key="bucket_name",
        )
    endpoint_url = r.raw("endpoint_url")
    host = r.nonblank("host")
    if endpoint_url is not None and host:
        raise r.error("endpoint_url", "'endpoint_url' and 'host' are alternatives; set one")
    is_secure = r.get("is_secure", to_bool, True)
    if endpoint_url is not None:
        endpoint_url = endpoint_url.strip()
        problem = http_url_problem(endpoint_url)
        if problem:
            raise r.error(
                "endpoint_url", f"value {redact_url(endpoint_url)!r} for 'endpoint_url' {problem}"
            )
        if r.raw("port") is not None:
            raise r.error(
                "port", "'port' goes with 'host'; with 'endpoint_url' write the port in the URL"
            )
    elif host:
        endpoint_url = _host_url(r, host, is_secure=is_secure)
    elif r.raw("port"):
        raise r.error("port", "'port' needs 'host'")

    # A custom host is almost always reached path-style (Ceph, Swift, MinIO); AWS itself
    # decides per bucket.
    default_style = "path" if endpoint_url else "auto"
    style = r.choice("calling_format", _CALLING_FORMATS, default_style)
    style = r.choice(
        "addressing_style", {"path": "path", "virtual": "virtual", "auto": "auto"}, style
    )
    ca_bundle = r.get("ca_bundle")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise r.error("ca_bundle", f"value {ca_bundle!r} for 'ca_bundle' is not a readable file")
    threshold = r.positive("multipart_threshold", to_size, 1 * GiB, allow_zero=True)
    chunk = r.get("multipart_chunksize", to_size, 64 * MiB)
    if not MIN_PART_BYTES <= chunk <= MAX_PART_BYTES:
        raise r.error(
            "multipart_chunksize",
            f"value {r.raw('multipart_chunksize')!r} for 'multipart_chunksize' must be "
            "between 5MiB and 5GiB (the S3 part size limits)",
        )
    if 0 < threshold < MIN_PART_BYTES:
        raise r.error(
            "multipart_threshold",
            f"value {r.raw('multipart_threshold')!r} for 'multipart_threshold' must be "
            "0 (never use multipart) or at least 5MiB",
        )
    if threshold > MAX_SINGLE_PUT_BYTES:
        raise r.error(
            "multipart_threshold",
            f"value {r.raw('multipart_threshold')!r} for 'multipart_threshold' must be "
            "at most 5GiB (a single PUT cannot be larger)",
        )
    fanout_buffer = r.positive("fanout_buffer", to_size, 64 * MiB, allow_zero=True)
    if 0 < fanout_buffer < 2 * MiB:
        raise r.error(
            "fanout_buffer",
            f"value {r.raw('fanout_buffer')!r} for 'fanout_buffer' must be 0 (one read per "
            "destination) or at least 2MiB (two of the 1 MiB chunks a read takes)",
        )
    list_version = r.get("list_version", to_int, 2)
    if list_version not in (1, 2):
        raise r.error(
            "list_version", f"value {r.raw('list_version')!r} for 'list_version' is not 1 or 2"
        )
    for key in ("region", "bucket_name"):
        value = r.raw(key)
        if value is not None and any(ch.isspace() for ch in value.strip()):
            raise r.error(key, f"value {value!r} for '{key}' contains white space")
    return EndpointConfig(
        name=section.name,
        bucket=bucket.strip(),
        endpoint_url=endpoint_url,
        region=(r.get("region") or "us-east-1").strip(),
        access_key=r.raw("aws_access_key_id"),
        secret_key=r.raw("aws_secret_access_key"),
        signature_version=r.choice(
            "signature_version", {"s3v4": "s3v4", "v4": "s3v4", "s3": "s3", "v2": "s3"}, "s3v4"
        ),
        addressing_style=style,
        verify_tls=r.get("verify_tls", to_bool, True),
        ca_bundle=ca_bundle,
        multipart_threshold_bytes=threshold,
        multipart_chunksize_bytes=chunk,
        list_version=list_version,
        max_pool_connections=r.count("max_pool_connections", 64, maximum=MAX_POOL_CONNECTIONS),
        verify_md5=r.get("verify_md5", to_bool, False),
        connect_timeout_s=r.duration("connect_timeout", 10.0),
        read_timeout_s=r.duration("read_timeout", 60.0),
        max_attempts=r.count("max_attempts", 5, maximum=MAX_ATTEMPTS),
        retry_deadline_s=r.duration("retry_deadline", 300.0),
        data_path=r.choice("data_path", {"raw": "raw", "botocore": "botocore"}, "raw"),
        abort_uploads_after_s=r.duration("abort_uploads_after", 86400.0, allow_zero=True),
        fanout_buffer_bytes=fanout_buffer,
        tpslimit=r.positive(
            "tpslimit", to_float, 0.0, allow_zero=True, maximum=MAX_TPS, maximum_text="100000"
        ),
        tpslimit_burst=r.count("tpslimit_burst", 1, maximum=MAX_WORKERS),
        upload_state=_upload_state(r.get("upload_state")),
        versions=r.get("versions", to_bool, False),
        delete_markers=r.get("delete_markers", to_bool, False),
    )


def _upload_state(value: str | None) -> str:
    """``upload_state``: a directory (``~`` expanded when used), ``none``, ``redis`` (the
    ``[pubsub]`` Redis, joined by :func:`load`), or "" (the default directory)."""
    value = (value or "").strip()
    return value.lower() if value.lower() in ("none", "redis") else value


_REDIS_KEYS = {
    "redis",
    "sns",
    "url",
    "host",
    "port",
    "db",
    "password",
    "ssl",
    "ssl_ca_certs",
    "channel",
    "mode",
    "stream",
    "group",
    "consumer",
    "dead_letter_stream",
    "max_deliveries",
    "reclaim_idle",
    "maxlen",
    "list",
    "marker_keys",
    "shards",
    "cluster",
    "cluster_nodes",
    "wait_replicas",
    "wait_timeout",
}


def _redis(section: _Section | None, env: Mapping[str, str] | None) -> RedisConfig:
    env = os.environ if env is None else env
    r = _Reader(section or _Section("pubsub"), _REDIS_KEYS, {"password", "url"}, env)
    use_redis = r.get("redis", to_bool, True)
    if r.get("sns", to_bool, False):
        raise r.error(
            "sns",
            "value 'True' for 'sns': SNS was never implemented; set "
            "'sns = False' and 'redis = True'",
        )
    if not use_redis:
        raise r.error(
            "redis",
            "value 'False' for 'redis': exactly one of 'redis' and 'sns' "
            "must be true, and only Redis is supported",
        )
    url = r.raw("url")
    if url is None and env.get("S3S3_REDIS_URL"):
        url = env["S3S3_REDIS_URL"]
        r.from_env["url"] = "S3S3_REDIS_URL"
    ssl = r.get("ssl", to_bool, False)
    if url is not None:
        url = url.strip()
        problem = redis_url_problem(url)
        if problem:
            raise r.error("url", f"value {redact_url(url)!r} for 'url' {problem}")
        for key in ("host", "port", "db", "ssl"):
            if r.raw(key) is not None:
                raise r.error(key, f"'{key}' and 'url' are alternatives; set one")
    else:
        host = _url_host(r, r.nonblank("host") or "127.0.0.1", url_key="url")
        port = r.get("port", to_port, 6379)
        db = r.positive("db", to_int, 0, allow_zero=True)
        url = f"{'rediss' if ssl else 'redis'}://{host}:{port}/{db}"
        problem = redis_url_problem(url)
        if problem:
            raise r.error("host", f"value {host!r} for 'host' makes a Redis URL that {problem}")
    ssl_ca_certs = r.get("ssl_ca_certs")
    if ssl_ca_certs and not Path(ssl_ca_certs).is_file():
        raise r.error(
            "ssl_ca_certs", f"value {ssl_ca_certs!r} for 'ssl_ca_certs' is not a readable file"
        )
    mode = r.choice("mode", {"pubsub": "pubsub", "stream": "stream"}, "pubsub")
    if r.get("list") and mode != "stream":
        raise r.error(
            "list",
            f"value {r.raw('list')!r} for 'list' needs 'mode = stream' (list "
            "entries are moved into the stream)",
        )
    list_key = r.get("list")
    if list_key and "{" in list_key and list_key.split("{", 1)[1].startswith("}"):
        # Redis hashes such a key whole; no processing list could share its slot.
        raise r.error(
            "list",
            f"value {list_key!r} for 'list' starts its hash tag with '{{}}': Redis hashes "
            "it as a whole, so no processing list can share its slot; name the list "
            "without '{}' or with a non-empty tag ('minio{events}')",
        )
    cluster, cluster_nodes = _redis_cluster(r, url)
    channel = (r.get("channel") or "backup").strip()
    # One hash tag for every key the daemon uses, so a Redis Cluster keeps them on one slot.
    tag = "{" + channel + "}"
    shards = _shards(r)
    return RedisConfig(
        url=url,
        password=r.raw("password") or env.get("S3S3_REDIS_PASSWORD") or None,
        ssl_ca_certs=ssl_ca_certs,
        channel=channel,
        mode=mode,
        stream=(r.get("stream") or f"s3s3:{tag}:stream").strip(),
        group=(r.get("group") or "s3s3").strip(),
        consumer=(r.get("consumer") or f"{socket.gethostname()}-{os.getpid()}").strip(),
        dead_letter_stream=(r.get("dead_letter_stream") or f"s3s3:{tag}:dead").strip(),
        max_deliveries=r.count("max_deliveries", 5, maximum=MAX_DELIVERIES),
        reclaim_idle_s=r.duration("reclaim_idle", 300.0),
        maxlen=r.count("maxlen", 1_000_000, maximum=MAX_STREAM_LEN),
        list_key=list_key,
        marker_keys=r.get("marker_keys", to_bool, True),
        shards=shards,
        cluster=cluster,
        cluster_nodes=cluster_nodes,
        wait_replicas=r.count("wait_replicas", 0, maximum=MAX_WAIT_REPLICAS, allow_zero=True),
        wait_timeout_s=r.duration("wait_timeout", 1.0),
    )


def _shards(r: _Reader) -> int:
    """``shards``: 1 to MAX_SHARDS. Each shard's stream names derive from ``channel``
    (``s3s3:{CHANNEL-I}:stream``), so names given explicitly cannot hold with several."""
    shards = r.count("shards", 1, maximum=MAX_SHARDS)
    if shards > 1:
        for key in ("stream", "dead_letter_stream"):
            if r.raw(key) is not None:
                raise r.error(
                    key,
                    f"'{key}' and 'shards = {shards}' cannot be combined: each shard's "
                    f"streams are named after 'channel' (s3s3:{{CHANNEL-0}}:stream ...); "
                    f"remove '{key}' or set 'shards = 1'",
                )
    return shards


MAX_WAIT_REPLICAS = 16


def _redis_cluster(r: _Reader, url: str) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """``cluster`` and ``cluster_nodes``: whether ``url`` names a Redis Cluster node, and
    the other start-up nodes; a cluster has only database 0 and no unix sockets."""
    cluster = r.get("cluster", to_bool, False)
    nodes = r.get("cluster_nodes", to_list, ())
    if not cluster:
        if nodes:
            raise r.error("cluster_nodes", "'cluster_nodes' needs 'cluster = true'")
        return False, ()
    if url.startswith("unix://"):
        raise r.error("cluster", "'cluster = true' needs a redis:// or rediss:// URL, not unix://")
    parts = urlsplit(url)
    path_db = parts.path.strip("/")
    query_db = dict(parse_qsl(parts.query)).get("db")
    for db in (path_db, query_db):
        if db not in (None, "", "0"):
            raise r.error(
                "db" if r.raw("db") is not None else "url",
                f"database {db} with 'cluster = true': a Redis Cluster has only database 0",
            )
    parsed = []
    for node in nodes:
        host, sep, port = node.rpartition(":")
        host = host.strip("[]")
        try:
            number = to_port(port) if sep and host else None
        except ValueError:
            number = None
        if number is None:
            raise r.error(
                "cluster_nodes",
                f"value {node!r} in 'cluster_nodes' is not host:port (give 'host:port, host:port')",
            )
        parsed.append((host, number))
    return True, tuple(parsed)


_LISTEN_KEYS = {
    "workers",
    "grace",
    "delete",
    "summary_interval",
    "retry_base",
    "retry_max",
    "event_keys",
    "bwlimit",
}


def _listen(section: _Section | None) -> ListenConfig:
    r = _Reader(section or _Section("listen"), _LISTEN_KEYS)
    retry_base = r.duration("retry_base", 0.5)
    retry_max = r.duration("retry_max", 30.0)
    if retry_base > retry_max:
        raise r.error(
            "retry_base",
            f"value {r.shown('retry_base')} for 'retry_base' must not "
            f"exceed 'retry_max' ({retry_max:g}s)",
        )
    return ListenConfig(
        workers=r.count("workers", 32, maximum=MAX_WORKERS),
        grace_s=r.duration("grace", 30.0, allow_zero=True),
        delete=r.get("delete", to_bool, False),
        summary_interval_s=r.duration("summary_interval", 60.0),
        retry_base_s=retry_base,
        retry_max_s=retry_max,
        event_key_encoding=r.choice(
            "event_keys", {"auto": "auto", "url": "url", "raw": "raw"}, "auto"
        ),
        bwlimit=r.get("bwlimit", to_bwlimit, NO_BWLIMIT),
    )


_BUCKET_KEYS = {
    "workers",
    "prefix",
    "include",
    "exclude",
    "delete",
    "max_delete_fraction",
    "size_only",
    "lock",
    "lock_ttl",
    "lock_dir",
    "progress_interval",
    "grace",
    "bwlimit",
    "list_concurrency",
}
#: Listing requests one side of the bucket job may have on the wire at once.
MAX_LIST_CONCURRENCY = 256


def _bucket(section: _Section | None) -> BucketConfig:
    r = _Reader(section or _Section("bucket"), _BUCKET_KEYS)
    fraction = r.get("max_delete_fraction", to_float, 0.5)
    if not 0.0 <= fraction <= 1.0:
        raise r.error(
            "max_delete_fraction",
            f"value {r.raw('max_delete_fraction')!r} for "
            "'max_delete_fraction' must be between 0 and 1",
        )
    return BucketConfig(
        workers=r.count("workers", 32, maximum=MAX_WORKERS),
        prefix=r.get("prefix") or "",
        include=r.get("include", to_list, ()),
        exclude=r.get("exclude", to_list, ()),
        delete=r.get("delete", to_bool, False),
        max_delete_fraction=fraction,
        size_only=r.get("size_only", to_bool, False),
        lock=r.choice("lock", {k: k for k in ("auto", "redis", "local", "none")}, "auto"),
        lock_ttl_s=r.duration("lock_ttl", 3600.0),
        lock_dir=r.get("lock_dir") or "/tmp",
        progress_interval_s=r.duration("progress_interval", 30.0),
        grace_s=r.duration("grace", 30.0, allow_zero=True),
        bwlimit=r.get("bwlimit", to_bwlimit, NO_BWLIMIT),
        list_concurrency=r.count("list_concurrency", 8, maximum=MAX_LIST_CONCURRENCY),
    )


_HTTP_KEYS = {
    "host",
    "port",
    "token",
    "tls_cert",
    "tls_key",
    "max_body",
    "max_connections",
    "timeout",
}
#: Shorter tokens are guessable; RGW puts the token in the push endpoint's path, so it
#: must also be URL-safe.
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"^[A-Za-z0-9._~-]+$")


def _http(section: _Section, env: Mapping[str, str] | None) -> HttpConfig:
    env = os.environ if env is None else env
    r = _Reader(section, _HTTP_KEYS, {"token"}, env)
    token = r.raw("token")
    if token is None and env.get("S3S3_HTTP_TOKEN"):
        token = env["S3S3_HTTP_TOKEN"]
        r.from_env["token"] = "S3S3_HTTP_TOKEN"
    token = (token or "").strip()
    if not token:
        raise r.error(
            "token",
            "'token' is missing: the HTTP intake accepts events only with a secret token "
            "(in the URL path or as 'Authorization: Bearer'); make one with "
            "'python3 -c \"import secrets; print(secrets.token_urlsafe(24))\"'",
        )
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
        raise r.error(
            "token",
            f"'token' must be at least {MIN_TOKEN_CHARS} characters of A-Z, a-z, 0-9, "
            "'-', '_', '.' or '~' (it goes into a URL path)",
        )
    cert, key = r.get("tls_cert"), r.get("tls_key")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path and not Path(path).is_file():
            raise r.error(name, f"value {path!r} for '{name}' is not a readable file")
    if bool(cert) != bool(key):
        raise r.error(
            "tls_key" if cert else "tls_cert", "'tls_cert' and 'tls_key' go together; set both"
        )
    return HttpConfig(
        token=token,
        host=_url_host(r, r.nonblank("host") or "127.0.0.1", url_key="host"),
        port=r.get("port", to_port, 8089),
        tls_cert=cert or None,
        tls_key=key or None,
        max_body=r.positive(
            "max_body",
            to_size,
            MAX_MESSAGE_BYTES,
            maximum=MAX_MESSAGE_BYTES,
            maximum_text=f"{MAX_MESSAGE_BYTES // 1024}KiB (the largest message s3s3 reads)",
        ),
        max_connections=r.count("max_connections", 64, maximum=MAX_WORKERS),
        timeout_s=r.duration("timeout", 30.0),
    )


_AMQP_KEYS = {"url", "queue", "exchange", "exchange_type", "routing_key", "declare", "prefetch"}
_AMQP_SCHEMES = ("amqp", "amqps")


def _amqp(section: _Section, env: Mapping[str, str] | None) -> AmqpConfig:
    env = os.environ if env is None else env
    r = _Reader(section, _AMQP_KEYS, {"url"}, env)
    url = r.raw("url")
    if url is None and env.get("S3S3_AMQP_URL"):
        url = env["S3S3_AMQP_URL"]
        r.from_env["url"] = "S3S3_AMQP_URL"
    url = (url or AmqpConfig.url).strip()
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in _AMQP_SCHEMES or not parts.hostname or port == -1:
        raise r.error(
            "url",
            f"value {redact_url(url)!r} for 'url' is not an AMQP URL "
            "(amqp://user:password@host:port/vhost, the vhost percent-encoded: %2F for /)",
        )
    queue = (r.get("queue") or "s3s3").strip()
    return AmqpConfig(
        url=url,
        queue=queue,
        exchange=(r.get("exchange") or "").strip() or None,  # empty: the default exchange
        exchange_type=r.choice(
            "exchange_type", {k: k for k in ("topic", "direct", "fanout")}, "topic"
        ),
        routing_key=(r.get("routing_key") or "#").strip(),
        declare=r.get("declare", to_bool, True),
        prefetch=r.count("prefetch", 64, maximum=65535),
    )


def to_address(value: str) -> tuple[str, int, int] | None:
    """``9464`` (on 127.0.0.1), ``0.0.0.0:9464``, ``[::1]:9464``, ``9464-9470`` (the first
    free port of the range); ``off`` or empty: None. As ``(host, first, last)``.

    Port 0 asks the system for a free port (the script logs which).
    """
    text = value.strip()
    if text.lower() in ("", "off", "no", "false"):
        return None
    host, sep, ports = text.rpartition(":")
    if not sep:
        host, ports = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    first, dash, last = ports.partition("-")
    last = last if dash else first
    if not (first.isdigit() and last.isdigit()) or int(last) > 65535 or int(first) > int(last):
        raise ValueError(
            "is not a port, HOST:PORT or HOST:PORT-PORT (e.g. 9464, 0.0.0.0:9464, 9464-9470)"
        )
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError("has no valid host before its port")
    return host, int(first), int(last)


_METRICS_KEYS = {"listen", "intake", "textfile", "pushgateway", "job", "period"}


def _metrics(section: _Section | None) -> MetricsConfig:
    r = _Reader(section or _Section("metrics"), _METRICS_KEYS, {"pushgateway"})
    listen = r.get("listen", to_address, None)
    intake = r.get("intake", to_address, None)
    if listen is not None and intake is not None and listen == intake and listen[1] != 0:
        raise r.error(
            "intake", f"'intake' and 'listen' are the same address ({listen[0]}:{listen[1]})"
        )
    textfile = r.nonblank("textfile")
    if textfile is not None and not Path(textfile).parent.is_dir():
        raise r.error("textfile", f"value {textfile!r} for 'textfile': its folder does not exist")
    gateway = r.nonblank("pushgateway")
    if gateway is not None:
        # user:password@ is the Pushgateway's basic auth (s3s3.metrics.bucketjob sends it).
        scheme, sep, rest = gateway.partition("://")
        authority, slash, path = rest.partition("/")
        bare = scheme + sep + authority.rpartition("@")[2] + slash + path if sep else gateway
        problem = http_url_problem(bare)
        if problem:
            raise r.error(
                "pushgateway", f"value {redact_url(gateway)!r} for 'pushgateway' {problem}"
            )
    return MetricsConfig(
        listen=listen,
        intake=intake,
        textfile=textfile,
        pushgateway=gateway,
        job=(r.get("job") or "s3s3bucket").strip(),
        period_s=r.duration("period", 3600.0),
    )


_LOGGING_KEYS = {"format"}


def _log_format(section: _Section | None) -> str:
    r = _Reader(section or _Section("logging"), _LOGGING_KEYS)
    return r.choice("format", {"text": "text", "json": "json"}, "text")


#: Every key of every section: a malformed line's first word is named only when it is one.
_ALL_KEYS = frozenset(
    _ENDPOINT_KEYS
    | _REDIS_KEYS
    | _LISTEN_KEYS
    | _BUCKET_KEYS
    | _HTTP_KEYS
    | _AMQP_KEYS
    | _METRICS_KEYS
    | _LOGGING_KEYS
)


def secrets_in_environment(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The secret values the ``S3S3_*`` environment variables hold, for redaction: secret
    keys, passwords, tokens and the passwords inside Redis URLs."""
    env = os.environ if env is None else env
    found: list[str] = []
    for name, value in env.items():
        if not name.startswith("S3S3_") or not value:
            continue
        upper = name.upper()
        if any(part in upper for part in ("SECRET", "PASSWORD", "TOKEN")):
            found.append(value)
        elif upper.endswith("_URL"):
            found += url_secrets(value)
    return tuple(found)


def load(
    config_file: str | os.PathLike | None = None,
    *,
    search_path: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read the INI files and return validated settings.

    The files of ``search_path`` (by default :func:`default_search_path`) are read in order,
    then ``config_file``; a later file's keys override an earlier one's, as in 2015.
    """
    paths = list(default_search_path() if search_path is None else search_path)
    if config_file is not None:
        config_file = Path(config_file)
        if not config_file.is_file():
            raise ConfigError(f"configuration file '{config_file}' does not exist or is not a file")
        paths.append(config_file)
    sections, read = _read_files(paths)
    if not read:
        raise ConfigError(
            "no configuration file found; looked for " + ", ".join(str(p) for p in paths)
        )
    if "source" not in sections:
        raise ConfigError(f"missing section '[source]' (files read: {', '.join(read)})")
    dest_names = [n for n in sections if n.startswith("dest")]
    if not dest_names:
        raise ConfigError(
            "no destination: add a section whose name starts with 'dest' "
            f"(files read: {', '.join(read)})"
        )
    known = {"source", "pubsub", "listen", "bucket", "http", "amqp", "metrics", "logging"}
    for name in sections:
        if name not in known and not name.startswith("dest"):
            raise ConfigError(
                f"unknown section '[{name}]' (known: [source], [dest...], "
                "[pubsub], [listen], [bucket], [http], [amqp], [metrics], [logging])",
                path=sections[name].path_of(),
                section=name,
            )
    for name in dest_names:
        for key in _SOURCE_ONLY_KEYS:
            if key in sections[name].values:
                raise ConfigError(
                    f"'{key}' is read on [source] only (the source's versions are what is "
                    "replicated; a destination's versioning is checked when a run starts)",
                    path=sections[name].path_of(key),
                    section=name,
                    key=key,
                )
    redis_cfg = _redis(sections.get("pubsub"), env)
    return Settings(
        source=_endpoint(sections["source"], env),
        destinations=tuple(
            _with_upload_state_redis(_endpoint(sections[n], env), redis_cfg) for n in dest_names
        ),
        redis=redis_cfg,
        listen=_listen(sections.get("listen")),
        bucket=_bucket(sections.get("bucket")),
        http=_http(sections["http"], env) if "http" in sections else None,
        amqp=_amqp(sections["amqp"], env) if "amqp" in sections else None,
        metrics=_metrics(sections.get("metrics")),
        log_format=_log_format(sections.get("logging")),
        files=tuple(read),
    )


def _with_upload_state_redis(cfg: EndpointConfig, redis_cfg: RedisConfig) -> EndpointConfig:
    """``upload_state = redis`` keeps upload progress in the ``[pubsub]`` Redis."""
    if cfg.upload_state != "redis":
        return cfg
    return dataclasses.replace(cfg, upload_state_redis=redis_cfg)


# --------------------------------------------------------------------------- 2015 surface

#: Filled by :func:`initialize`, as the 2015 module did at import.
source: dict = {}
destinations: list = []
pubsub: dict = {}
settings: Settings | None = None


def initialize(config_file: str | os.PathLike | None = None) -> Settings:
    """Load the configuration and fill the 2015 module-level dicts; returns the settings."""
    global settings
    settings = load(config_file)
    source.clear()
    source.update(_as_dict(settings.source))
    destinations[:] = [_as_dict(d) for d in settings.destinations]
    pubsub.clear()
    pubsub.update(
        {"redis": True, "sns": False, "channel": settings.redis.channel, "url": settings.redis.url}
    )
    return settings


def _as_dict(endpoint: EndpointConfig) -> dict:
    return {
        "name": endpoint.name,
        "aws_access_key_id": endpoint.access_key,
        "aws_secret_access_key": endpoint.secret_key,
        "bucket_name": endpoint.bucket,
        "endpoint_url": endpoint.endpoint_url,
        "verify_md5": endpoint.verify_md5,
        "config": endpoint,
    }


def endpoint_from_dict(args: Mapping[str, object], name: str = "connection") -> EndpointConfig:
    """Build an endpoint from a 2015-style ``connection_args`` dict (values may be typed)."""
    if isinstance(args.get("config"), EndpointConfig):
        return args["config"]  # type: ignore[return-value]
    section = _Section(name)
    for key, value in args.items():
        if value is None or key == "name":
            continue
        section.values[key] = (str(value), "<connection_args>")
    if "bucket_name" not in section.values:
        # A connection is not tied to a bucket in the 2015 API; buckets are chosen later.
        section.values["bucket_name"] = ("-", "<connection_args>")
    return _endpoint(section, env={})
