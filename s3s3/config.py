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
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

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
    max_attempts: int = 5
    # "raw": per-object calls go through s3s3.rawhttp (http.client, s3s3.signing);
    # "botocore": every call goes through boto3, the opt-out should a server need it.
    data_path: str = "raw"

    @property
    def multipart_enabled(self) -> bool:
        return self.multipart_threshold_bytes > 0

    def describe(self) -> str:
        """A log-safe one-liner: section, URL and bucket, never credentials."""
        return f"[{self.name}] {self.endpoint_url or 'AWS'} bucket {self.bucket}"


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

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for logs."""
        return mask_url(self.url)


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


@dataclass(frozen=True)
class Settings:
    """Everything read from the INI files."""

    source: EndpointConfig
    destinations: tuple[EndpointConfig, ...]
    redis: RedisConfig = RedisConfig()
    listen: ListenConfig = ListenConfig()
    bucket: BucketConfig = BucketConfig()
    files: tuple[str, ...] = ()


# --------------------------------------------------------------------------- converters

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_FACTOR = {"": 1, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}


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
    return int(float(m.group(1)) * _SIZE_FACTOR[m.group(2).lower()])


def to_int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError("is not a valid integer") from None


def to_float(value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError("is not a valid number") from None


def to_list(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"[,\n]", value) if p.strip())


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


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


def _read_files(paths: Iterable[Path]) -> tuple[dict[str, _Section], list[str]]:
    sections: dict[str, _Section] = {}
    read: list[str] = []
    for path in paths:
        parser = configparser.ConfigParser(
            interpolation=None, inline_comment_prefixes=("#", ";"), strict=False)
        try:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh, source=str(path))
        except FileNotFoundError:
            continue
        except (configparser.Error, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"cannot parse configuration: {exc}", path=str(path)) from exc
        read.append(str(path))
        for name in parser.sections():
            sec = sections.setdefault(name, _Section(name))
            for key, value in parser.items(name):
                sec.values[key] = (value, str(path))
    return sections, read


class _Reader:
    """Typed access to one section that names file, section and key in every error."""

    def __init__(self, section: _Section, known: set[str], secrets: set[str] = frozenset(),
                 env: Mapping[str, str] | None = None) -> None:
        self.section = section
        self.secrets = secrets
        self.env = os.environ if env is None else env
        unknown = sorted(set(section.values) - known)
        if unknown:
            key = unknown[0]
            raise ConfigError(
                f"unknown key '{key}' (known keys: {', '.join(sorted(known))})",
                path=section.path_of(key), section=section.name, key=key)

    def env_name(self, key: str) -> str:
        return "S3S3_" + re.sub(r"[^A-Za-z0-9]", "_", f"{self.section.name}_{key}").upper()

    def raw(self, key: str) -> str | None:
        if key in self.secrets:
            from_env = self.env.get(self.env_name(key))
            if from_env:
                return from_env
        item = self.section.values.get(key)
        return None if item is None else item[0]

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.section.path_of(key), section=self.section.name,
                           key=key)

    def get(self, key: str, convert: Callable[[str], object] = str, default=None):
        value = self.raw(key)
        if value is None or (value.strip() == "" and convert is not str):
            return default
        try:
            return convert(value)
        except ValueError as exc:
            shown = "<secret>" if key in self.secrets else repr(value)
            raise ConfigError(f"value {shown} for '{key}' {exc}", path=self.section.path_of(key),
                              section=self.section.name, key=key) from None

    def choice(self, key: str, choices: Mapping[str, str], default: str) -> str:
        value = self.raw(key)
        if value is None or not value.strip():
            return default
        normalised = value.strip()
        if normalised in choices:
            return choices[normalised]
        raise self.error(key, f"value {value!r} for '{key}' is not one of "
                              f"{', '.join(sorted(set(choices)))}")

    def positive(self, key: str, convert, default, *, allow_zero: bool = False):
        value = self.get(key, convert, default)
        if value is None:
            return None
        if value < 0 or (value == 0 and not allow_zero):
            raise self.error(key, f"value {self.raw(key)!r} for '{key}' must be "
                                  f"{'zero or more' if allow_zero else 'greater than zero'}")
        return value


_ENDPOINT_KEYS = {
    "aws_access_key_id", "aws_secret_access_key", "bucket_name", "host", "port", "is_secure",
    "calling_format", "verify_md5", "endpoint_url", "region", "signature_version",
    "addressing_style", "verify_tls", "ca_bundle", "multipart_threshold",
    "multipart_chunksize", "list_version", "max_pool_connections", "connect_timeout",
    "read_timeout", "max_attempts", "data_path",
}
_CALLING_FORMATS = {
    "OrdinaryCallingFormat": "path",
    "SubdomainCallingFormat": "virtual",
    "boto.s3.connection.OrdinaryCallingFormat": "path",
    "boto.s3.connection.SubdomainCallingFormat": "virtual",
}


def _endpoint(section: _Section, env: Mapping[str, str] | None) -> EndpointConfig:
    r = _Reader(section, _ENDPOINT_KEYS, {"aws_access_key_id", "aws_secret_access_key"}, env)
    bucket = r.get("bucket_name")
    if not bucket or not bucket.strip():
        raise ConfigError("missing required key 'bucket_name'", path=section.path_of(),
                          section=section.name, key="bucket_name")
    endpoint_url = r.get("endpoint_url")
    host = r.get("host")
    if endpoint_url and host:
        raise r.error("endpoint_url", "'endpoint_url' and 'host' are alternatives; set one")
    is_secure = r.get("is_secure", to_bool, True)
    if endpoint_url:
        endpoint_url = endpoint_url.strip()
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise r.error("endpoint_url", f"value {endpoint_url!r} for 'endpoint_url' is not an "
                                          "http:// or https:// URL")
    elif host:
        port = r.positive("port", to_int, None)
        scheme = "https" if is_secure else "http"
        endpoint_url = f"{scheme}://{host.strip()}" + (f":{port}" if port else "")
    elif r.raw("port"):
        raise r.error("port", "'port' needs 'host'")

    # A custom host is almost always reached path-style (Ceph, Swift, MinIO); AWS itself
    # decides per bucket.
    default_style = "path" if endpoint_url else "auto"
    style = r.choice("calling_format", _CALLING_FORMATS, default_style)
    style = r.choice("addressing_style", {"path": "path", "virtual": "virtual", "auto": "auto"},
                     style)
    ca_bundle = r.get("ca_bundle")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise r.error("ca_bundle", f"value {ca_bundle!r} for 'ca_bundle' is not a readable file")
    threshold = r.positive("multipart_threshold", to_size, 1 * GiB, allow_zero=True)
    chunk = r.get("multipart_chunksize", to_size, 64 * MiB)
    if not MIN_PART_BYTES <= chunk <= MAX_PART_BYTES:
        raise r.error("multipart_chunksize",
                      f"value {r.raw('multipart_chunksize')!r} for 'multipart_chunksize' must be "
                      "between 5MiB and 5GiB (the S3 part size limits)")
    if 0 < threshold < MIN_PART_BYTES:
        raise r.error("multipart_threshold",
                      f"value {r.raw('multipart_threshold')!r} for 'multipart_threshold' must be "
                      "0 (never use multipart) or at least 5MiB")
    list_version = r.get("list_version", to_int, 2)
    if list_version not in (1, 2):
        raise r.error("list_version",
                      f"value {r.raw('list_version')!r} for 'list_version' is not 1 or 2")
    return EndpointConfig(
        name=section.name,
        bucket=bucket.strip(),
        endpoint_url=endpoint_url,
        region=(r.get("region") or "us-east-1").strip(),
        access_key=r.raw("aws_access_key_id"),
        secret_key=r.raw("aws_secret_access_key"),
        signature_version=r.choice(
            "signature_version", {"s3v4": "s3v4", "v4": "s3v4", "s3": "s3", "v2": "s3"}, "s3v4"),
        addressing_style=style,
        verify_tls=r.get("verify_tls", to_bool, True),
        ca_bundle=ca_bundle,
        multipart_threshold_bytes=threshold,
        multipart_chunksize_bytes=chunk,
        list_version=list_version,
        max_pool_connections=r.positive("max_pool_connections", to_int, 64),
        verify_md5=r.get("verify_md5", to_bool, False),
        connect_timeout_s=r.positive("connect_timeout", to_float, 10.0),
        read_timeout_s=r.positive("read_timeout", to_float, 60.0),
        max_attempts=r.positive("max_attempts", to_int, 5),
        data_path=r.choice("data_path", {"raw": "raw", "botocore": "botocore"}, "raw"),
    )


_REDIS_KEYS = {
    "redis", "sns", "url", "host", "port", "db", "password", "ssl", "ssl_ca_certs", "channel",
    "mode", "stream", "group", "consumer", "dead_letter_stream", "max_deliveries",
    "reclaim_idle", "maxlen", "list", "marker_keys",
}


def _redis(section: _Section | None, env: Mapping[str, str] | None) -> RedisConfig:
    env = os.environ if env is None else env
    r = _Reader(section or _Section("pubsub"), _REDIS_KEYS, {"password", "url"}, env)
    use_redis = r.get("redis", to_bool, True)
    if r.get("sns", to_bool, False):
        raise r.error("sns", "value 'True' for 'sns': SNS was never implemented; set "
                             "'sns = False' and 'redis = True'")
    if not use_redis:
        raise r.error("redis", "value 'False' for 'redis': exactly one of 'redis' and 'sns' "
                               "must be true, and only Redis is supported")
    url = r.raw("url") or env.get("S3S3_REDIS_URL")
    ssl = r.get("ssl", to_bool, False)
    if url:
        url = url.strip()
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"value for 'url' is not a redis://, rediss:// or unix:// URL "
                              f"({mask_url(url)!r})", path=r.section.path_of("url"),
                              section=r.section.name, key="url")
        for key in ("host", "port", "db", "ssl"):
            if r.raw(key) is not None:
                raise r.error(key, f"'{key}' and 'url' are alternatives; set one")
    else:
        host = (r.get("host") or "127.0.0.1").strip()
        port = r.positive("port", to_int, 6379)
        db = r.positive("db", to_int, 0, allow_zero=True)
        url = f"{'rediss' if ssl else 'redis'}://{host}:{port}/{db}"
    mode = r.choice("mode", {"pubsub": "pubsub", "stream": "stream"}, "pubsub")
    if r.get("list") and mode != "stream":
        raise r.error("list", f"value {r.raw('list')!r} for 'list' needs 'mode = stream' (list "
                              "entries are moved into the stream)")
    channel = (r.get("channel") or "backup").strip()
    # One hash tag for every key the daemon uses, so a Redis Cluster keeps them on one slot.
    tag = "{" + channel + "}"
    return RedisConfig(
        url=url,
        password=r.raw("password") or env.get("S3S3_REDIS_PASSWORD") or None,
        ssl_ca_certs=r.get("ssl_ca_certs"),
        channel=channel,
        mode=mode,
        stream=(r.get("stream") or f"s3s3:{tag}:stream").strip(),
        group=(r.get("group") or "s3s3").strip(),
        consumer=(r.get("consumer") or f"{socket.gethostname()}-{os.getpid()}").strip(),
        dead_letter_stream=(r.get("dead_letter_stream") or f"s3s3:{tag}:dead").strip(),
        max_deliveries=r.positive("max_deliveries", to_int, 5),
        reclaim_idle_s=r.positive("reclaim_idle", to_float, 300.0),
        maxlen=r.positive("maxlen", to_int, 1_000_000),
        list_key=r.get("list"),
        marker_keys=r.get("marker_keys", to_bool, True),
    )


def _listen(section: _Section | None) -> ListenConfig:
    r = _Reader(section or _Section("listen"),
                {"workers", "grace", "delete", "summary_interval", "retry_base", "retry_max",
                 "event_keys"})
    return ListenConfig(
        workers=r.positive("workers", to_int, 32),
        grace_s=r.positive("grace", to_float, 30.0, allow_zero=True),
        delete=r.get("delete", to_bool, False),
        summary_interval_s=r.positive("summary_interval", to_float, 60.0),
        retry_base_s=r.positive("retry_base", to_float, 0.5),
        retry_max_s=r.positive("retry_max", to_float, 30.0),
        event_key_encoding=r.choice("event_keys", {"auto": "auto", "url": "url", "raw": "raw"},
                                    "auto"),
    )


def _bucket(section: _Section | None) -> BucketConfig:
    r = _Reader(section or _Section("bucket"),
                {"workers", "prefix", "include", "exclude", "delete", "max_delete_fraction",
                 "size_only", "lock", "lock_ttl", "lock_dir", "progress_interval"})
    fraction = r.get("max_delete_fraction", to_float, 0.5)
    if not 0.0 <= fraction <= 1.0:
        raise r.error("max_delete_fraction", f"value {r.raw('max_delete_fraction')!r} for "
                                             "'max_delete_fraction' must be between 0 and 1")
    return BucketConfig(
        workers=r.positive("workers", to_int, 32),
        prefix=r.get("prefix") or "",
        include=r.get("include", to_list, ()),
        exclude=r.get("exclude", to_list, ()),
        delete=r.get("delete", to_bool, False),
        max_delete_fraction=fraction,
        size_only=r.get("size_only", to_bool, False),
        lock=r.choice("lock", {k: k for k in ("auto", "redis", "local", "none")}, "auto"),
        lock_ttl_s=r.positive("lock_ttl", to_float, 3600.0),
        lock_dir=r.get("lock_dir") or "/tmp",
        progress_interval_s=r.positive("progress_interval", to_float, 30.0),
    )


def load(config_file: str | os.PathLike | None = None, *,
         search_path: Iterable[Path] | None = None,
         env: Mapping[str, str] | None = None) -> Settings:
    """Read the INI files and return validated settings.

    The files of ``search_path`` (by default :func:`default_search_path`) are read in order,
    then ``config_file``; a later file's keys override an earlier one's, as in 2015.
    """
    paths = list(default_search_path() if search_path is None else search_path)
    if config_file is not None:
        config_file = Path(config_file)
        if not config_file.is_file():
            raise ConfigError(f"configuration file '{config_file}' does not exist or is not "
                              "a file")
        paths.append(config_file)
    sections, read = _read_files(paths)
    if not read:
        raise ConfigError("no configuration file found; looked for "
                          + ", ".join(str(p) for p in paths))
    if "source" not in sections:
        raise ConfigError(f"missing section '[source]' (files read: {', '.join(read)})")
    dest_names = [n for n in sections if n.startswith("dest")]
    if not dest_names:
        raise ConfigError("no destination: add a section whose name starts with 'dest' "
                          f"(files read: {', '.join(read)})")
    known = {"source", "pubsub", "listen", "bucket"}
    for name in sections:
        if name not in known and not name.startswith("dest"):
            raise ConfigError(f"unknown section '[{name}]' (known: [source], [dest...], "
                              "[pubsub], [listen], [bucket])", path=sections[name].path_of(),
                              section=name)
    return Settings(
        source=_endpoint(sections["source"], env),
        destinations=tuple(_endpoint(sections[n], env) for n in dest_names),
        redis=_redis(sections.get("pubsub"), env),
        listen=_listen(sections.get("listen")),
        bucket=_bucket(sections.get("bucket")),
        files=tuple(read),
    )


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
    pubsub.update({"redis": True, "sns": False, "channel": settings.redis.channel,
                   "url": settings.redis.url})
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
