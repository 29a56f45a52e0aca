"""Limits: ``bwlimit`` (rclone's rates and timetables), ``tpslimit``, and the concurrency
that halves on SlowDown and recovers.

Parsing and the limiters run on an injected clock and sleep (no waiting); then, against a
real moto server behind the fault proxy, a copy whose SlowDowns drop the limit and whose
successes bring it back, a tpslimit that spaces the requests the proxy sees, and a bwlimit
that makes a copy of a few MiB last as long as it should (loose bounds: a shared machine).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from s3s3 import config
from s3s3.config import BwTimetable, MiB, RateSlot, load, to_bwlimit, to_rate
from s3s3.errors import ConfigError, FatalEndpointError, TransientEndpointError
from s3s3.model import Outcome
from s3s3.scripts import _cli
from s3s3.scripts import bucket as bucket_script
from s3s3.scripts import listen as listen_script
from s3s3.store.endpoint import Endpoint, make_endpoints
from s3s3.store.pacing import (
    AdaptiveConcurrency,
    BandwidthLimiter,
    EndpointPacing,
    PacedBody,
    TokenBucket,
    bandwidth_limiter,
    is_slowdown,
)
from s3s3.transfer import copy_object
from tests.conftest import raw_client
from tests.faultproxy import FaultProxy

KiB = 1024
PACING_LOG = "s3s3.store.pacing"


class FakeClock:
    """A monotonic clock that moves only when slept on (or moved by the test)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, rate",
    [
        ("10M", 10 * MiB),
        ("512k", 512 * KiB),
        ("512K", 512 * KiB),
        ("1.5M", 1.5 * MiB),
        ("2G", 2 * 1024 * MiB),
        ("1T", 1024 * 1024 * MiB),
        ("100B", 100),
        ("10Mi", 10 * MiB),
        ("10MiB", 10 * MiB),
        ("10M/s", 10 * MiB),
        ("666", 666 * KiB),  # a bare number is KiB/s, as rclone reads it
        ("off", None),
        ("OFF", None),
        ("0", None),
    ],
)
def test_rates_read_as_rclone_reads_them(text, rate):
    assert to_rate(text) == rate


def test_a_single_rate_applies_at_every_time():
    table = to_bwlimit("10M")
    assert table.slots == (RateSlot(None, 0, 10 * MiB),)
    for day in range(7):
        assert table.rate_at(datetime(2026, 12, 7 + day, 13, 37)) == 10 * MiB
    assert to_bwlimit("off").is_off and to_bwlimit("off").rate_at(datetime(2026, 12, 7)) is None


def test_a_timetable_switches_at_its_times_and_wraps_round_midnight():
    table = to_bwlimit("08:00,512k 18:00,10M 23:00,off")
    at = {
        (0, 0): None,  # before 08:00 the 23:00 entry of the day before still holds
        (7, 59): None,
        (8, 0): 512 * KiB,
        (12, 30): 512 * KiB,
        (17, 59): 512 * KiB,
        (18, 0): 10 * MiB,
        (22, 59): 10 * MiB,
        (23, 0): None,
    }
    for (hour, minute), rate in at.items():
        assert table.rate_at(datetime(2026, 12, 9, hour, minute)) == rate, (hour, minute)
    assert to_bwlimit("08:00,512k;18:00,10M;23:00,off").slots == table.slots  # rclone's ;


def test_timetable_days_follow_rclones_example():
    # rclone's own example: 512 KiB/s from Monday, 10 MiB/s just before Friday ends,
    # 1 MiB/s from Saturday 10:00, no limit from Sunday 20:00 until Monday.
    table = to_bwlimit("Mon-00:00,512 Fri-23:59,10M Sat-10:00,1M Sun-20:00,off")
    monday = datetime(2026, 12, 7)  # a Monday
    cases = [
        (timedelta(days=0), 512 * KiB),
        (timedelta(days=3, hours=12), 512 * KiB),  # Thursday noon
        (timedelta(days=4, hours=23, minutes=59), 10 * MiB),
        (timedelta(days=5, hours=9), 10 * MiB),
        (timedelta(days=5, hours=10), 1 * MiB),
        (timedelta(days=6, hours=19, minutes=59), 1 * MiB),
        (timedelta(days=6, hours=20), None),
        (timedelta(days=6, hours=23, minutes=59), None),
    ]
    for offset, rate in cases:
        assert table.rate_at(monday + offset) == rate, offset


def test_entries_without_a_day_apply_on_every_day():
    # rclone: "Mon-00:00,512 12:00,1M Sun-20:00,off" means 12:00,1M on each day.
    table = to_bwlimit("Mon-00:00,512 12:00,1M Sun-20:00,off")
    monday = datetime(2026, 12, 7)
    assert table.rate_at(monday + timedelta(hours=11)) == 512 * KiB
    assert table.rate_at(monday + timedelta(hours=12)) == 1 * MiB
    assert table.rate_at(monday + timedelta(days=1, hours=8)) == 1 * MiB
    assert table.rate_at(monday + timedelta(days=6, hours=12, minutes=30)) == 1 * MiB
    assert table.rate_at(monday + timedelta(days=6, hours=20)) is None
    assert to_bwlimit("monday-09:30,1M Tuesday-9:30,2M").slots == (
        RateSlot(0, 570, 1 * MiB),
        RateSlot(1, 570, 2 * MiB),
    )


def test_the_settings_carry_bwlimit_and_tpslimit(tmp_path):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(
        "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9000\ntpslimit = 2.5\n"
        "tpslimit_burst = 4\n[dest]\nbucket_name = dst\n"
        "[bucket]\nbwlimit = 08:00,512k 23:00,off\n[listen]\nbwlimit = 10M\n"
    )
    s = load(ini, search_path=[], env={})
    assert (s.source.tpslimit, s.source.tpslimit_burst) == (2.5, 4)
    assert (s.destinations[0].tpslimit, s.destinations[0].tpslimit_burst) == (0.0, 1)
    assert s.bucket.bwlimit == BwTimetable(
        (RateSlot(None, 480, 512 * KiB), RateSlot(None, 1380, None)), "08:00,512k 23:00,off"
    )
    assert s.listen.bwlimit.rate_at(datetime(2026, 12, 7)) == 10 * MiB


BASE = (
    "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9000\n[dest]\nbucket_name = dst\n"
)


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "[bucket]\nbwlimit = 10X\n",
            "value '10X' for 'bwlimit' is not a rate (a rate such as 512k, 10M or off, or a "
            "timetable such as '08:00,512k 18:00,10M 23:00,off' or 'Mon-08:00,1M "
            "Sat-00:00,off') in section 'bucket'",
        ),
        (
            "[listen]\nbwlimit = 10M:off\n",
            "value '10M:off' for 'bwlimit' uses rclone's UP:DOWN form, which s3s3 does not "
            "take: s3s3 limits one direction only, the bytes it reads from GET bodies (each "
            "source read once, however many destinations it feeds); give one rate in section "
            "'listen'",
        ),
        (
            "[bucket]\nbwlimit = 25:00,1M\n",
            "value '25:00,1M' for 'bwlimit' has an entry '25:00,1M' whose time '25:00' is not "
            "HH:MM (00:00-23:59) in section 'bucket'",
        ),
        (
            "[bucket]\nbwlimit = Xyz-10:00,1M\n",
            "value 'Xyz-10:00,1M' for 'bwlimit' has an entry 'Xyz-10:00,1M' whose day 'Xyz' "
            "is not Mon, Tue... Sun in section 'bucket'",
        ),
        (
            "[bucket]\nbwlimit = 08:00,1M 10M\n",
            "value '08:00,1M 10M' for 'bwlimit' has an entry '10M' that is not TIME,RATE (a "
            "rate such as 512k, 10M or off, or a timetable such as '08:00,512k 18:00,10M "
            "23:00,off' or 'Mon-08:00,1M Sat-00:00,off') in section 'bucket'",
        ),
        (
            "[bucket]\nbwlimit = 08:00,fast\n",
            "value '08:00,fast' for 'bwlimit' has an entry '08:00,fast' whose rate 'fast' is "
            "not a rate (a rate such as 512k, 10M or off, or a timetable such as "
            "'08:00,512k 18:00,10M 23:00,off' or 'Mon-08:00,1M Sat-00:00,off') in section "
            "'bucket'",
        ),
        (
            "[dest]\ntpslimit = -1\n",
            "value '-1' for 'tpslimit' must be zero or more in section 'dest'",
        ),
        (
            "[source]\ntpslimit = many\n",
            "value 'many' for 'tpslimit' is not a valid number in section 'source'",
        ),
        (
            "[dest]\ntpslimit_burst = 0\n",
            "value '0' for 'tpslimit_burst' must be greater than zero in section 'dest'",
        ),
    ],
)
def test_bad_limits_name_file_section_key_and_value(tmp_path, extra, message):
    base = tmp_path / "base.ini"
    base.write_text(BASE)
    path = tmp_path / "s3s3.ini"
    path.write_text(extra)
    with pytest.raises(ConfigError) as err:
        load(path, search_path=[base], env={})
    assert str(err.value) == f"{message} (file: '{path}')"


# --------------------------------------------------------------------------- token buckets


def test_a_request_bucket_keeps_its_rate_after_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(10.0, capacity=1, full=True, clock=clock, sleep=clock.sleep)
    started = clock()
    for _ in range(101):
        bucket.take(1)
    # The first token was in the bucket; 100 more at 10 a second take 10 s.
    assert clock() - started == pytest.approx(10.0)


def test_a_bucket_never_holds_more_than_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(10.0, capacity=3, full=True, clock=clock, sleep=clock.sleep)
    clock.now += 3600  # an hour idle: still only 3 tokens
    waits = [bucket.take(1) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.1])


def test_bandwidth_is_paced_in_slices_at_its_rate():
    clock = FakeClock()
    limiter = BandwidthLimiter(
        to_bwlimit("1M"), clock=clock, sleep=clock.sleep, now=lambda: datetime(2026, 12, 7)
    )
    body = PacedBody(io.BytesIO(b"x" * (10 * MiB)), limiter)
    started = clock()
    read = 0
    while chunk := body.read(1 * MiB):
        read += len(chunk)
    assert read == 10 * MiB
    # No burst at the start: 10 MiB at 1 MiB/s take 10 s, within 1 %.
    assert clock() - started == pytest.approx(10.0, rel=0.01)
    # Each 1 MiB read was paced in 64 KiB slices, never one sleep for the whole read.
    assert len(clock.slept) >= 150 and max(clock.slept) <= 64 * KiB / MiB + 1e-9


def test_a_read_of_everything_is_paced_too():
    clock = FakeClock()
    limiter = BandwidthLimiter(
        to_bwlimit("512k"), clock=clock, sleep=clock.sleep, now=lambda: datetime(2026, 12, 7)
    )
    assert PacedBody(io.BytesIO(b"y" * MiB), limiter).read() == b"y" * MiB
    assert clock.now - 1000.0 == pytest.approx(2.0, rel=0.01)


def test_the_timetable_switches_the_limit_at_its_times(caplog):
    clock = FakeClock()
    local = {"now": datetime(2026, 12, 7, 7, 59)}
    limiter = BandwidthLimiter(
        to_bwlimit("08:00,1M 09:00,off"), clock=clock, sleep=clock.sleep, now=lambda: local["now"]
    )
    caplog.set_level(logging.INFO, logger=PACING_LOG)

    def seconds_to_read(nbytes: int) -> float:
        before = clock()
        PacedBody(io.BytesIO(b"z" * nbytes), limiter).read()
        return clock() - before

    assert seconds_to_read(4 * MiB) == 0.0  # 07:59: the 09:00 entry (off) still holds
    assert limiter.rate_bytes_s() is None
    local["now"] = datetime(2026, 12, 7, 8, 0)
    assert seconds_to_read(2 * MiB) == pytest.approx(2.0, rel=0.01)
    assert seconds_to_read(1 * MiB) == pytest.approx(1.0, rel=0.01)
    assert limiter.rate_bytes_s() == MiB
    local["now"] = datetime(2026, 12, 7, 9, 0)
    assert seconds_to_read(8 * MiB) == 0.0
    # One line per switch, not one per read.
    assert [r.getMessage() for r in caplog.records] == [
        "bwlimit 1 MiB/s from now on (bwlimit '08:00,1M 09:00,off')",
        "bwlimit off from now on (bwlimit '08:00,1M 09:00,off')",
    ]


def test_off_makes_no_limiter_and_paces_nothing():
    assert bandwidth_limiter(to_bwlimit("off")) is None
    assert bandwidth_limiter(to_bwlimit("00:00,off 12:00,0")) is None
    cfg = config.EndpointConfig(name="dest", bucket="b")
    pacing = EndpointPacing.for_endpoint(cfg)
    body = io.BytesIO(b"abc")
    assert pacing.paced_body(body) is body and pacing.tps is None


# --------------------------------------------------------------------------- AIMD


def slowdown() -> TransientEndpointError:
    return TransientEndpointError(
        "SlowDown (HTTP 503): Please reduce your request rate.",
        op="PutObject",
        endpoint="dest",
        bucket="b",
        code="SlowDown",
        status=503,
    )


def test_throttling_answers_are_told_from_other_failures():
    assert is_slowdown(slowdown())
    assert is_slowdown(
        TransientEndpointError("x", op="GetObject", endpoint="s", bucket="b", status=429)
    )
    assert is_slowdown(
        TransientEndpointError(
            "x", op="GetObject", endpoint="s", bucket="b", code="RequestLimitExceeded", status=400
        )
    )
    assert not is_slowdown(
        FatalEndpointError("x", op="GetObject", endpoint="s", bucket="b", code="AccessDenied")
    )
    assert not is_slowdown(ConnectionResetError())


def test_slowdowns_halve_the_limit_once_each_and_successes_bring_it_back(caplog):
    clock = FakeClock()
    aimd = AdaptiveConcurrency("dest", ceiling=32, clock=clock)
    caplog.set_level(logging.INFO, logger=PACING_LOG)
    # Four requests in flight meet the same congestion: one halving, not four.
    tickets = [aimd.acquire() for _ in range(4)]
    for ticket in tickets:
        aimd.release(ticket, outcome="slowdown")
    assert aimd.limit == 16
    # A request sent after the halving that is told to slow down halves again.
    aimd.release(aimd.acquire(), outcome="slowdown")
    assert aimd.limit == 8
    # A success in the same second does not raise it; one a second later does, by one.
    aimd.release(aimd.acquire(), outcome="ok")
    assert aimd.limit == 8
    for expected in range(9, 33):
        clock.now += 1.0
        aimd.release(aimd.acquire(), outcome="ok")
        aimd.release(aimd.acquire(), outcome="ok")  # the same second: no second step
        assert aimd.limit == expected
    clock.now += 1.0
    aimd.release(aimd.acquire(), outcome="ok")
    assert aimd.limit == 32  # the ceiling
    # Other failures change nothing.
    aimd.release(aimd.acquire(), outcome="failed")
    assert aimd.limit == 32
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[:2] == [
        ("WARNING", "[dest] slowed down: 32 -> 16 requests in flight"),
        ("WARNING", "[dest] slowed down: 16 -> 8 requests in flight"),
    ]
    assert lines[2] == ("INFO", "[dest] speeding up: 8 -> 9 requests in flight")
    assert lines[-1] == ("INFO", "[dest] recovered: 31 -> 32 requests in flight")
    assert len(lines) == 2 + 24  # one line per change


def test_the_limit_never_drops_below_one(caplog):
    clock = FakeClock()
    aimd = AdaptiveConcurrency("source", ceiling=4, clock=clock)
    caplog.set_level(logging.INFO, logger=PACING_LOG)
    for _ in range(10):
        aimd.release(aimd.acquire(), outcome="slowdown")
    assert aimd.limit == 1
    assert [r.getMessage() for r in caplog.records] == [
        "[source] slowed down: 4 -> 2 requests in flight",
        "[source] slowed down: 2 -> 1 requests in flight",
    ]


def test_requests_beyond_the_limit_wait_for_a_slot():
    aimd = AdaptiveConcurrency("dest", ceiling=2, clock=FakeClock())
    aimd.release(aimd.acquire(), outcome="slowdown")  # limit 1
    first = aimd.acquire()
    entered = threading.Event()

    def second() -> None:
        aimd.release(aimd.acquire(), outcome="ok")
        entered.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not entered.wait(0.3)  # waits while the first is in flight
    aimd.release(first, outcome="ok")
    assert entered.wait(5.0)
    thread.join(5.0)
    assert aimd.in_flight == 0


def test_an_endpoints_pacing_counts_a_slowdown_from_the_request():
    clock = FakeClock()
    pacing = EndpointPacing(AdaptiveConcurrency("dest", ceiling=8, clock=clock))

    def raising(exc: Exception):
        def request():
            raise exc

        return request

    with pytest.raises(TransientEndpointError):
        pacing.send(raising(slowdown()))
    assert pacing.concurrency.limit == 4 and pacing.concurrency.in_flight == 0
    with pytest.raises(FatalEndpointError):
        pacing.send(raising(FatalEndpointError("no", op="PutObject", endpoint="dest", bucket="b")))
    assert pacing.concurrency.limit == 4 and pacing.concurrency.in_flight == 0
    assert pacing.send(lambda: "answer") == "answer"
    assert pacing.concurrency.in_flight == 0


# --------------------------------------------------------------------------- real servers


@pytest.fixture
def proxied_copy(moto_servers, make_bucket):
    """(source endpoint, destination config through the fault proxy, proxy, keys): four
    keys of 64 KiB at the source."""
    a, b = moto_servers
    src = make_bucket(a, name="source")
    dst = make_bucket(b, name="dest")
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        raw_client(a).put_object(Bucket=src.bucket, Key=key, Body=key.encode() * (16 * KiB))
    with FaultProxy(b["endpoint_url"]) as proxy:
        yield src, dataclasses.replace(dst.cfg, endpoint_url=proxy.url), proxy, keys


def test_slowdowns_from_a_real_server_drop_the_limit_and_it_recovers(proxied_copy, caplog):
    src, dst_cfg, proxy, keys = proxied_copy
    caplog.set_level(logging.INFO, logger=PACING_LOG)
    # Recovery a step every 50 ms instead of every second, to keep the test short.
    concurrency = AdaptiveConcurrency("dest", ceiling=8, increase_every_s=0.05)
    dst = Endpoint(dst_cfg, pacing=EndpointPacing(concurrency))
    proxy.fail_code = "SlowDown"
    proxy.fail_methods = {"PUT"}
    proxy.fail_next = 3
    for _ in range(3):  # each PUT answered SlowDown, once per copy
        with pytest.raises(TransientEndpointError) as err:
            copy_object(src, dst, keys[0], force=True)
        assert err.value.code == "SlowDown" and err.value.status == 503
    assert dst.concurrency_limit() == 1
    copied = 0
    while dst.concurrency_limit() < 8 and copied < 200:
        time.sleep(0.06)
        copy_object(src, dst, keys[copied % len(keys)], force=True)
        copied += 1
    assert dst.concurrency_limit() == 8, copied
    assert proxy.counts["PUT"] == 3 + copied
    for key in keys[: min(copied, len(keys))]:
        got = raw_client_for(dst_cfg).get_object(Bucket=dst_cfg.bucket, Key=key)["Body"].read()
        assert got == key.encode() * (16 * KiB)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [
        "[dest] slowed down: 8 -> 4 requests in flight",
        "[dest] slowed down: 4 -> 2 requests in flight",
        "[dest] slowed down: 2 -> 1 requests in flight",
    ]
    assert lines[-1] == "[dest] recovered: 7 -> 8 requests in flight"
    assert len(lines) == 3 + 7


def raw_client_for(cfg: config.EndpointConfig):
    return raw_client(
        {
            "endpoint_url": cfg.endpoint_url,
            "region": cfg.region,
            "access_key": cfg.access_key,
            "secret_key": cfg.secret_key,
        }
    )


def test_a_tpslimit_spaces_the_requests_the_server_sees(proxied_copy):
    src, dst_cfg, proxy, keys = proxied_copy
    (dst,) = make_endpoints([dataclasses.replace(dst_cfg, tpslimit=5.0)], workers=4)
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [dst.head(k) for k in keys for _ in range(2)])
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    heads = sorted(at for at, method, _path in proxy.requests if method == "HEAD")
    assert len(heads) == 24
    # 24 requests at 5 a second, the first from the burst of 1: 23 / 5 = 4.6 s at least.
    assert heads[-1] - heads[0] >= 0.8 * 23 / 5
    assert elapsed < 30
    # No two seconds saw many more than 5: the limit holds across the three threads.
    for first in heads:
        assert sum(1 for at in heads if first <= at < first + 1.0) <= 5 + 2


def test_a_bwlimit_makes_a_real_copy_last_as_long_as_the_limit_says(moto_servers, make_bucket):
    a, b = moto_servers
    src_ep = make_bucket(a, name="source")
    dst_ep = make_bucket(b, name="dest")
    size = 4 * MiB
    data = bytes(range(256)) * (size // 256)
    raw_client(a).put_object(Bucket=src_ep.bucket, Key="big", Body=data)
    src, dst = make_endpoints([src_ep.cfg, dst_ep.cfg], bwlimit=to_bwlimit("2M"), workers=1)
    started = time.monotonic()
    result = copy_object(src, dst, "big")
    elapsed = time.monotonic() - started
    expected_s = size / (2 * MiB)  # the bucket starts empty: no burst
    assert 0.8 * expected_s <= elapsed <= 6 * expected_s + 10, elapsed
    assert result.outcome is Outcome.COPIED and result.bytes_read == size
    got = raw_client(b).get_object(Bucket=dst_ep.bucket, Key="big")["Body"].read()
    assert got == data


# --------------------------------------------------------------------------- command lines


INI = (
    "[source]\nbucket_name = src\nendpoint_url = http://127.0.0.1:9\n"
    "[dest1]\nbucket_name = d1\nendpoint_url = http://127.0.0.1:9\ntpslimit = 1\n"
    "[dest2]\nbucket_name = d2\nendpoint_url = http://127.0.0.1:9\n"
    "[bucket]\nbwlimit = 1M\n"
)


@pytest.mark.parametrize("script", [bucket_script, listen_script])
def test_command_line_limits_override_the_ini(tmp_path, script):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(INI)
    args = script.build_parser().parse_args(
        ["--config", str(ini), "--bwlimit", "08:00,512k 23:00,off", "--tpslimit", "7"]
    )
    settings = _cli.apply_limits(load(ini, search_path=[], env={}), args)
    assert settings.bucket.bwlimit == settings.listen.bwlimit == to_bwlimit("08:00,512k 23:00,off")
    endpoints = (settings.source, *settings.destinations)
    assert [e.tpslimit for e in endpoints] == [7.0, 7.0, 7.0]  # every endpoint, as rclone's
    assert [e.tpslimit_burst for e in endpoints] == [1, 1, 1]
    # Without the options, the INI holds.
    plain = _cli.apply_limits(
        load(ini, search_path=[], env={}), script.build_parser().parse_args([])
    )
    assert plain.bucket.bwlimit == to_bwlimit("1M") and plain.destinations[0].tpslimit == 1.0
    assert plain.source.tpslimit == 0.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bwlimit", "fast"], "--bwlimit 'fast' is not a rate"),
        (["--bwlimit", "10M:1M"], "--bwlimit '10M:1M' uses rclone's UP:DOWN form"),
        (["--tpslimit", "-3"], "--tpslimit '-3' must be between 0 (no limit) and 100000"),
        (["--tpslimit-burst", "0"], "--tpslimit-burst '0' must be between 1 and 1024"),
    ],
)
def test_bad_command_line_limits_are_configuration_errors(tmp_path, argv, message):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(INI)
    args = bucket_script.build_parser().parse_args(argv)
    with pytest.raises(ConfigError) as err:
        _cli.apply_limits(load(ini, search_path=[], env={}), args)
    assert str(err.value).startswith(message)


def test_s3s3bucket_exits_2_on_a_bad_bwlimit(tmp_path):
    ini = tmp_path / "s3s3.ini"
    ini.write_text(INI)
    proc = subprocess.run(
        [sys.executable, "-m", "s3s3.scripts.bucket", "--config", str(ini), "--bwlimit", "9Q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2, proc.stderr
    assert "configuration error: --bwlimit '9Q' is not a rate" in proc.stderr
