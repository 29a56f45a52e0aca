"""One retry level: a key toward a destination that answers 503 for good sends at most
``max_attempts`` requests there, and is reported failed within ``retry_deadline``.

The destination is a real moto server behind the fault proxy, which answers 503 to every
request on the key (listings and the bucket check pass). Each case runs through the bucket
job's public entry (``sync_buckets``) and through ``api.upload``: every layer below them
(transfer, the stores, botocore) tries once, so the count is exact.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from s3s3 import api
from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.runner import sync_buckets
from s3s3.config import BucketConfig
from s3s3.errors import TransientEndpointError
from s3s3.store.endpoint import Endpoint
from tests.conftest import raw_client
from tests.faultproxy import FaultProxy

KEY = "k"
BASE_S, MAX_S = 0.5, 20.0  # retry.Policy's defaults, which Policy.for_endpoint keeps


def windows(failures: int) -> list[float]:
    """The backoff windows after each of ``failures`` failures (a wait is 50-100% of one)."""
    return [min(MAX_S, BASE_S * 2 ** (n - 1)) for n in range(1, failures + 1)]


def through_the_bucket_job(src: Endpoint, dst: Endpoint) -> None:
    summary = sync_buckets(src, [dst], JobOptions(BucketConfig(workers=1)))
    (dest,) = summary.destinations
    assert dest.failed == 1 and [f.key for f in dest.failures] == [KEY], dest
    assert "503" in dest.failures[0].cause or "ServiceUnavailable" in dest.failures[0].cause


def through_api_upload(src: Endpoint, dst: Endpoint) -> None:
    source = api.Bucket(api.Connection(src.cfg), src.bucket).get_key(KEY)
    assert source is not None
    target = api.Bucket(api.Connection(dst.cfg), dst.bucket).new_key(KEY)
    with pytest.raises(TransientEndpointError) as err:
        api.upload(source, target)
    assert err.value.status == 503 and err.value.key == KEY


ENTRIES = {"bucket job": through_the_bucket_job, "api.upload": through_api_upload}


@pytest.fixture
def failing_destination(moto_servers, make_bucket):
    """(source, destination endpoint maker, proxy): the key exists at the source; every
    request on it at the destination is answered 503."""
    a, b = moto_servers
    src = make_bucket(a, name="source")
    dst = make_bucket(b, name="dest")
    raw_client(a).put_object(Bucket=src.bucket, Key=KEY, Body=b"x" * 100)
    with FaultProxy(b["endpoint_url"]) as proxy:
        key_path = f"/{dst.bucket}/{KEY}"
        proxy.fail_if = lambda method, path: path.split("?")[0] == key_path

        def destination(**overrides) -> Endpoint:
            return Endpoint(dataclasses.replace(dst.cfg, endpoint_url=proxy.url, **overrides))

        yield src, destination, proxy, key_path


def requests_on(proxy: FaultProxy, path: str) -> list[float]:
    return [at for at, _, p in proxy.requests if p.split("?")[0] == path]


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_key_sends_max_attempts_requests_and_fails_after_the_backoff(failing_destination, entry):
    src, destination, proxy, key_path = failing_destination
    dst = destination(max_attempts=3, retry_deadline_s=300.0)
    started = time.monotonic()
    ENTRIES[entry](src, dst)
    elapsed = time.monotonic() - started
    sent = requests_on(proxy, key_path)
    assert len(sent) == 3, proxy.requests  # not 3 x botocore's or the lean store's own
    waits = [later - earlier for earlier, later in zip(sent, sent[1:], strict=False)]
    for wait, window in zip(waits, windows(2), strict=True):
        assert window / 2 <= wait <= window + 0.5, (waits, window)
    # Reported failed once the last try failed: no wait after it.
    assert elapsed <= sum(windows(2)) + 3.0


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_short_deadline_stops_the_retries_before_the_attempts_run_out(failing_destination, entry):
    src, destination, proxy, key_path = failing_destination
    dst = destination(max_attempts=100, retry_deadline_s=2.0)
    started = time.monotonic()
    ENTRIES[entry](src, dst)
    elapsed = time.monotonic() - started
    sent = requests_on(proxy, key_path)
    # Waits of at least 0.25, 0.5, 1.0 s... : at most 4 fit in 2 s (5 tries); at most
    # 0.5, 1.0 s: at least 2 do (3 tries), and the next would end past the deadline.
    assert 3 <= len(sent) <= 5, proxy.requests
    # The policy lets the last try start at the deadline; it reaches the proxy a little
    # later than the first did (a sleep's overshoot, a new connection), well under the
    # shortest wait a further try would have needed.
    assert sent[-1] - sent[0] <= 2.0 + 0.1
    assert elapsed <= 2.0 + 3.0  # the deadline, and the run's own listings and checks
