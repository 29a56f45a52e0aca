"""Keeping the stream and its consumer group in shape: creating the group, trimming what every
group has acknowledged, and forgetting consumers that are long gone.

The stream stays bounded without dropping an unacknowledged entry: XADD never trims, and
:func:`trim_acknowledged` cuts (``XTRIM MINID ~``) only below the oldest entry some group
still needs. :class:`GroupUpkeep` runs both chores on their timers between the consumer's
reads. Nothing here reads work, acknowledges it or copies an object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis
import redis.exceptions

from s3s3.config import RedisConfig
from s3s3.queue.stream.entries import parse_id

log = logging.getLogger("s3s3.listen")

TRIM_INTERVAL_S = 5.0
CONSUMER_CLEANUP_INTERVAL_S = 3600.0
#: Consumers with nothing pending and silent this long are removed from the group.
CONSUMER_MAX_IDLE_S = 24 * 3600.0


def ensure_group(client: redis.Redis, cfg: RedisConfig) -> bool:
    """Create the consumer group (and the stream) if missing; True when it was created.

    The group starts at id 0, so entries published before the first listener ever ran are
    replicated too.
    """
    try:
        client.xgroup_create(cfg.stream, cfg.group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    log.info("created consumer group %r on stream %s", cfg.group, cfg.stream)
    return True


def safe_trim_id(groups: Iterable[tuple[object, int, object | None]]) -> str | None:
    """The lowest id any group still needs, or None when nothing may be trimmed.

    ``groups`` holds, per group, ``(last_delivered_id, pending_count, oldest_pending_id)``.
    A group needs its oldest pending entry, or, with nothing pending, every entry after the
    last one it was given. Entries below the returned id were given to every group and
    acknowledged by it.
    """
    needed = []
    for last_delivered, pending, oldest_pending in groups:
        if pending and oldest_pending is not None:
            needed.append(parse_id(oldest_pending))
        else:
            ms, seq = parse_id(last_delivered)
            needed.append((ms, seq + 1))
    if not needed:
        return None
    ms, seq = min(needed)
    if (ms, seq) <= (0, 1):
        return None
    return f"{ms}-{seq}"


def trim_acknowledged(client: redis.Redis, cfg: RedisConfig) -> int:
    """Trim entries every group has acknowledged (XTRIM MINID ~); returns entries removed."""
    try:
        groups = client.xinfo_groups(cfg.stream)
    except redis.exceptions.ResponseError:
        return 0  # no stream yet
    rows = []
    for group in groups:
        oldest = None
        if group["pending"]:
            oldest = client.xpending(cfg.stream, group["name"])["min"]
        rows.append((group["last-delivered-id"], group["pending"], oldest))
    threshold = safe_trim_id(rows)
    if threshold is None:
        return 0
    return client.xtrim(cfg.stream, minid=threshold, approximate=True)


_CLEANUP_CONSUMERS = """
local removed = 0
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[3] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""


def remove_idle_consumers(
    client: redis.Redis, cfg: RedisConfig, *, min_idle_s: float = CONSUMER_MAX_IDLE_S
) -> int:
    """Forget consumers (other than ours) that hold nothing and were silent ``min_idle_s``.

    Each restart of a listener with the default consumer name (host-pid) leaves one behind.
    The check and the removal run in one script: XGROUP DELCONSUMER would otherwise destroy
    the pending entries of a consumer that woke up in between.
    """
    return int(
        client.eval(
            _CLEANUP_CONSUMERS, 1, cfg.stream, cfg.group, int(min_idle_s * 1000), cfg.consumer
        )
    )


class GroupUpkeep:
    """The group's chores on their timers: a trim every :data:`TRIM_INTERVAL_S`, a cleanup of
    idle consumers at once and then hourly. Call :meth:`run_due` between reads."""

    def __init__(self, client: redis.Redis, cfg: RedisConfig) -> None:
        self.client = client
        self.cfg = cfg
        self.consumer_max_idle_s = max(CONSUMER_MAX_IDLE_S, 10 * cfg.reclaim_idle_s)
        now = time.monotonic()
        self._next_trim = now + TRIM_INTERVAL_S
        self._next_cleanup = now

    def run_due(self, now: float) -> None:
        """Run what is due at ``now`` (``time.monotonic()``); Redis errors propagate."""
        if now >= self._next_trim:
            self._next_trim = now + TRIM_INTERVAL_S
            removed = trim_acknowledged(self.client, self.cfg)
            if removed:
                log.debug("trimmed %d acknowledged entries from %s", removed, self.cfg.stream)
        if now >= self._next_cleanup:
            self._next_cleanup = now + CONSUMER_CLEANUP_INTERVAL_S
            try:
                removed = remove_idle_consumers(
                    self.client, self.cfg, min_idle_s=self.consumer_max_idle_s
                )
            except redis.exceptions.ResponseError as exc:
                # Housekeeping only: a managed Redis that forbids EVAL must not stop the daemon.
                log.warning(
                    "cannot remove idle consumers from group %r (%s); skipping that housekeeping",
                    self.cfg.group,
                    exc,
                )
                self._next_cleanup = float("inf")
                removed = 0
            if removed:
                log.info(
                    "removed %d idle consumers with nothing pending from group %r",
                    removed,
                    self.cfg.group,
                )
