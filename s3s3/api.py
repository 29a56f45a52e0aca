"""The 2015 Python API, kept by name and meaning, on top of the new engine.

Connections, buckets and keys are small handles: a :class:`Connection` holds one endpoint's
settings and its boto3 client, a :class:`Bucket` names a bucket on it, a :class:`Key` names
an object in a bucket. Nothing is fetched until asked for.

    from s3s3.api import create_connection, upload, duplicate_bucket

    src = create_connection({"host": "rgw.example.org", "port": 7480, "is_secure": False,
                             "aws_access_key_id": "...", "aws_secret_access_key": "..."})
    dst = create_connection({"endpoint_url": "https://s3.amazonaws.com", ...})
    upload(src.get_bucket("photos").get_key("2015/cat.png"),
           dst.get_bucket("photos-backup").new_key("2015/cat.png"))
    ok = duplicate_bucket(src.get_bucket("photos"), dst.get_bucket("photos-backup"))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence

from s3s3 import retry
from s3s3.config import EndpointConfig, endpoint_from_dict
from s3s3.errors import ConfigError
from s3s3.listing import list_objects
from s3s3.model import CopyResult, ObjectInfo
from s3s3.store.boto import build_client
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object

__all__ = ["Bucket", "Connection", "Key", "create_connection", "duplicate_bucket", "upload"]


class Connection:
    """One S3 endpoint's settings and client; buckets are chosen with :meth:`get_bucket`."""

    def __init__(self, cfg: EndpointConfig, client=None) -> None:
        self.cfg = cfg
        self._client = client

    def __repr__(self) -> str:
        return f"Connection({self.cfg.endpoint_url or 'AWS'!s})"

    @property
    def client(self):
        if self._client is None:
            self._client = build_client(self.cfg)
        return self._client

    def get_bucket(self, bucket_name: str | None = None) -> Bucket:
        """A handle on ``bucket_name`` (default: the connection's ``bucket_name``)."""
        name = bucket_name or self.cfg.bucket
        if not name or name == "-":
            raise ConfigError(
                "no bucket: pass bucket_name or put 'bucket_name' in the connection_args"
            )
        return Bucket(self, name)


class Bucket:
    """A bucket on a connection."""

    def __init__(self, connection: Connection, name: str) -> None:
        self.connection = connection
        self.name = name
        self.endpoint = Endpoint(
            dataclasses.replace(connection.cfg, bucket=name), client=connection.client
        )

    def __repr__(self) -> str:
        return f"Bucket({self.name!r})"

    def get_key(self, key_name: str) -> Key | None:
        """The key with its size and ETag, or None when it does not exist (as boto 2 did)."""
        info = self.endpoint.head(key_name)
        return None if info is None else Key(self, key_name, info)

    def new_key(self, key_name: str) -> Key:
        """A handle on a key that may not exist yet (an upload target)."""
        return Key(self, key_name)

    def list(self, prefix: str = "") -> Iterator[Key]:
        """Every key under ``prefix``, page by page."""
        for info in list_objects(self.endpoint, prefix):
            yield Key(self, info.key, info)

    __iter__ = list


class Key:
    """An object name in a bucket, with what is known about it."""

    def __init__(self, bucket: Bucket, name: str, info: ObjectInfo | None = None) -> None:
        self.bucket = bucket
        self.name = name
        self.info = info

    def __repr__(self) -> str:
        return f"Key({self.bucket.name!r}, {self.name!r})"

    @property
    def size(self) -> int | None:
        return None if self.info is None else self.info.size

    @property
    def etag(self) -> str | None:
        return None if self.info is None else self.info.etag

    @property
    def md5(self) -> str | None:
        """The md5 of the bytes when the ETag or s3s3's metadata tells it, else None."""
        return None if self.info is None else self.info.known_md5

    def exists(self) -> bool:
        self.info = self.bucket.endpoint.head(self.name)
        return self.info is not None


def create_connection(connection_args: Mapping[str, object]) -> Connection:
    """A connection from a 2015-style dict: the keys of an INI endpoint section.

    ``aws_access_key_id``, ``aws_secret_access_key``, ``host``, ``port``, ``is_secure``,
    ``calling_format``, and the newer ones (``endpoint_url``, ``region``,
    ``signature_version``, ``ca_bundle``…). ``bucket_name`` is optional here.
    """
    return Connection(endpoint_from_dict(connection_args))


def upload(
    source_key: Key, dest_keys: Key | Sequence[Key], verify_md5: bool = False, force: bool = False
) -> list[CopyResult]:
    """Copy ``source_key`` to each destination key, once each (each copy retried under its
    destination's ``max_attempts`` and ``retry_deadline``).

    A destination that already holds the same bytes (same size and md5) is skipped unless
    ``force``; a different one is replaced. With ``verify_md5``, md5s that no ETag gives are
    computed by reading the objects. Returns one :class:`CopyResult` per destination, whose
    ``outcome`` is ``copied``, ``skipped`` or ``missing`` (no such source key). Errors raise
    :class:`s3s3.errors.TransferError` or :class:`s3s3.errors.EndpointError`.
    """
    if isinstance(dest_keys, Key):
        dest_keys = [dest_keys]
    src = source_key.bucket.endpoint
    return [
        retry.call(
            functools.partial(
                copy_object,
                src,
                dest.bucket.endpoint,
                source_key.name,
                dest_key=dest.name,
                force=force,
                verify_md5=verify_md5,
                src_info=source_key.info,
            ),
            policy=retry.Policy.for_endpoint(dest.bucket.endpoint.cfg),
            what=f"copy {source_key.name!r} to [{dest.bucket.endpoint.name}]",
        )
        for dest in dest_keys
    ]


def duplicate_bucket(source_bucket: Bucket, dest_bucket: Bucket, verify_md5: bool = False) -> bool:
    """Bring ``dest_bucket`` in step with ``source_bucket``, whatever its size.

    Copies what is missing or different; deletes nothing. Returns True when every object
    is in step, False when some failed (they are logged with key and cause). For counts and
    more options use :func:`s3s3.bucketjob.runner.sync_buckets`.
    """
    # Imported here: the bucket job (and redis) is not needed by upload's users.
    from s3s3.bucketjob.options import JobOptions
    from s3s3.bucketjob.runner import sync_buckets

    src = source_bucket.endpoint
    dst = dest_bucket.endpoint
    summary = sync_buckets(src, [dst], JobOptions(verify_md5=verify_md5))
    return summary.ok
