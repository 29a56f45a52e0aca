"""The 2015 clients, ``ListenClient`` and ``BucketClient``, and ``publish`` for producers.

Each client reads the configuration when it is made (not at import), from ``config_file``
and the default search path, or takes ready :class:`~s3s3.config.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from s3s3 import config as _config
from s3s3.api import Connection
from s3s3.model import CopyResult
from s3s3.transfer import copy_object

__all__ = ["BucketClient", "ListenClient", "on_notify", "publish"]


def _settings(config_file, settings) -> _config.Settings:
    return settings if settings is not None else _config.load(config_file)


class ListenClient:
    """Listens on Redis (pub/sub channel ``backup``, or a stream) and copies each key."""

    def __init__(
        self,
        config_file: str | os.PathLike | None = None,
        *,
        settings: _config.Settings | None = None,
    ) -> None:
        self.settings = _settings(config_file, settings)

    def listen(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code (that of ``s3s3listen``)."""
        # s3s3listen's own body: signal handlers and exit codes are the scripts' business.
        from s3s3.scripts.listen import run_listener

        return run_listener(self.settings)


class BucketClient:
    """Brings every destination bucket in step with the source bucket."""

    def __init__(
        self,
        config_file: str | os.PathLike | None = None,
        *,
        settings: _config.Settings | None = None,
    ) -> None:
        self.settings = _settings(config_file, settings)

    def duplicate(self, **options) -> bool:
        """One reconciliation run; True when everything is in step.

        ``options`` are those of :func:`s3s3.bucketjob.runner.run_bucket_job` (``dry_run``, ``delete``,
        ``size_only``, ``prefix``…).
        """
        from s3s3.bucketjob.runner import run_bucket_job

        return run_bucket_job(self.settings, **options).ok


def on_notify(
    source_conn: Connection, dest_conns: Sequence[Connection], s3_key: str
) -> list[CopyResult]:
    """Copy ``s3_key`` from the source connection's bucket to each destination's, once each.

    Each connection's bucket is its ``bucket_name``. (The 2015 version re-uploaded to every
    earlier destination on each pass of its loop.)
    """
    src = source_conn.get_bucket().endpoint
    return [copy_object(src, conn.get_bucket().endpoint, s3_key) for conn in dest_conns]


def publish(
    keys: Iterable[str],
    *,
    config_file: str | os.PathLike | None = None,
    settings: _config.Settings | None = None,
) -> int:
    """Announce ``keys`` the way the configured listener consumes them; returns the count.

    Pub/sub mode PUBLISHes each key on the channel (as 2015 producers did); stream mode
    XADDs them to the stream, where they wait for a listener.
    """
    from s3s3.queue.producer import publish_keys
    from s3s3.queue.redis_client import connect

    cfg = _settings(config_file, settings).redis
    client = connect(cfg)
    try:
        return publish_keys(client, cfg, keys)
    finally:
        client.close()
