"""How one run of the bucket job goes: its ``[bucket]`` settings, after the overrides of the
command line or the API, and the run's own flags (dry run, enqueue, ``--verify-md5``).

Plain data and the decisions that follow from it alone (which comparison each destination
gets); nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from s3s3.config import BucketConfig, EndpointConfig, verifies_md5
from s3s3.errors import ConfigError
from s3s3.plan import Strategy


@dataclass(frozen=True)
class JobOptions:
    """The ``[bucket]`` settings of one run, and the flags that only a run has.

    ``verify_md5`` is ``--verify-md5``: as ``verify_md5 = True`` on every endpoint (see
    :meth:`verifies_md5`). ``dry_run`` wins over ``enqueue``.
    """

    bucket: BucketConfig = BucketConfig()
    dry_run: bool = False
    enqueue: bool = False
    verify_md5: bool = False
    # Replay every version (``versions = true`` on [source], ``--versions``), and delete
    # markers too (``delete_markers = true``): s3s3.bucketjob.versioned.
    versions: bool = False
    delete_markers: bool = False

    def __post_init__(self) -> None:
        cfg = self.bucket
        if self.versions and cfg.delete:
            raise ConfigError(
                "delete = true (--delete) cannot go with versions: a versioned run never "
                "deletes for good; the source's deletes replicate as delete markers with "
                "delete_markers = true on [source]",
                section="bucket",
                key="delete",
            )
        if self.versions and self.enqueue and not self.dry_run:
            raise ConfigError(
                "--enqueue cannot go with versions: the versioned bucket job replays here",
                section="source",
                key="versions",
            )
        if cfg.workers < 1:
            raise ValueError(f"workers must be at least 1, got {cfg.workers}")
        if cfg.list_concurrency < 1:
            raise ValueError(f"list_concurrency must be at least 1, got {cfg.list_concurrency}")
        if cfg.grace_s < 0:
            raise ValueError(f"grace_s must be zero or more, got {cfg.grace_s}")
        if not 0.0 <= cfg.max_delete_fraction <= 1.0:
            raise ValueError(
                f"max_delete_fraction must be between 0 and 1, got {cfg.max_delete_fraction}"
            )

    @property
    def enqueues(self) -> bool:
        """Whether the keys to copy go to the stream (a dry run enqueues nothing)."""
        return self.enqueue and not self.dry_run

    def verifies_md5(self, source: EndpointConfig, destination: EndpointConfig) -> bool:
        """Whether a key whose md5 one side does not show is read to compare it
        (:func:`config.verifies_md5`, asked for the run)."""
        return verifies_md5(source, destination, asked=self.verify_md5)

    def strategy(self, source: EndpointConfig, destination: EndpointConfig) -> Strategy:
        """How ``destination`` is compared with ``source`` (:class:`plan.Strategy`)."""
        return Strategy(
            size_only=self.bucket.size_only,
            verify_md5=self.verifies_md5(source, destination),
        )


def make_options(
    cfg: BucketConfig,
    *,
    dry_run: bool = False,
    enqueue: bool = False,
    delete: bool | None = None,
    size_only: bool | None = None,
    prefix: str | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    workers: int | None = None,
    list_concurrency: int | None = None,
    verify_md5: bool = False,
    versions: bool = False,
    delete_markers: bool = False,
) -> JobOptions:
    """The one place where overrides (command-line flags, API arguments) meet ``[bucket]``.

    None keeps the INI's value; include and exclude lists replace the INI's lists.
    """
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("delete", delete),
            ("size_only", size_only),
            ("prefix", prefix),
            ("workers", workers),
            ("list_concurrency", list_concurrency),
        )
        if value is not None
    }
    if include is not None:
        overrides["include"] = tuple(include)
    if exclude is not None:
        overrides["exclude"] = tuple(exclude)
    return JobOptions(
        dataclasses.replace(cfg, **overrides),
        dry_run=dry_run,
        enqueue=enqueue,
        verify_md5=verify_md5,
        versions=versions,
        delete_markers=delete_markers,
    )
