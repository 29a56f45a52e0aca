"""Parallel listing (s3s3.listing.parallel) and split_ranges (s3s3.listing.split): on Ceph
RGW, Swift s3api and moto, with ListObjectsV2 and V1, the parallel listing is the serial
listing exactly; it costs a small bucket no more requests, really has several requests on
the wire at once, holds a bounded number of pages, and raises a failure where it happened.
The bucket job reconciles with it."""

from __future__ import annotations

import bisect
import dataclasses
import gc
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from s3s3 import retry
from s3s3.bucketjob.options import JobOptions
from s3s3.bucketjob.runner import sync_buckets
from s3s3.config import BucketConfig, EndpointConfig
from s3s3.errors import EndpointError, ListingOrderError
from s3s3.keyspace import KeyRange
from s3s3.listing import list_objects, list_objects_parallel, split_ranges
from s3s3.listing.parallel import Digits, pages_ahead
from s3s3.model import ObjectInfo
from s3s3.plan import KeyFilter, Strategy, plan_keys
from s3s3.store.base import Page
from s3s3.store.endpoint import Endpoint
from tests.conftest import endpoint_config, raw_client
from tests.faultproxy import FaultProxy

#: Flat numeric keys, deep prefixes, unicode and awkward keys (test_keyspace's and more).
KEYS = sorted(
    [f"n/{i:05d}" for i in range(0, 300)]
    + [f"d/{i % 3}/{i % 5}/x/{i:03d}" for i in range(60)]
    + ["a", "a b", "a+b", "a%2Fb", "k", "k/", "z/é", "z/日本", "z/\U0001f600", "zz"]
    + ["é/ü", "n", "n/", "n0", "~tilde", "!bang"]
)
PAGE = 7  # small pages: many pages from few keys

FAST = retry.Policy(attempts=2, base_s=0.01, max_s=0.02, deadline_s=5)


def server_info(request, name: str) -> dict:
    info = request.getfixturevalue("moto_servers" if name == "moto" else name)
    return info[0] if name == "moto" else info


@pytest.fixture(scope="module", params=["ceph", "swift", "moto"])
def filled(request):
    """A bucket of KEYS on each server, made once for the module."""
    from tests.conftest import unique_bucket

    info = server_info(request, request.param)
    bucket = unique_bucket("plst")
    client = raw_client(info)
    client.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda kv: client.put_object(Bucket=bucket, Key=kv[1], Body=b"x" * (kv[0] % 5)),
                enumerate(KEYS),
            )
        )
    return request.param, info, bucket


def store_of(info: dict, bucket: str, *, url: str | None = None, **fields) -> Endpoint:
    cfg = endpoint_config(info, bucket, name="src", **fields)
    if url is not None:
        cfg = dataclasses.replace(cfg, endpoint_url=url)
    return Endpoint(cfg)


def entries(objects) -> list[tuple]:
    return [(o.key, o.size, o.etag, o.last_modified) for o in objects]


def list_gets(proxy: FaultProxy) -> list[str]:
    return [path for _, method, path in proxy.requests if method == "GET"]


# --------------------------------------------------------------------------- real servers


@pytest.mark.parametrize("list_version", [2, 1])
def test_the_parallel_listing_is_the_serial_listing(filled, list_version):
    _, info, bucket = filled
    store = store_of(info, bucket, list_version=list_version)
    serial = entries(list_objects(store, page_size=PAGE))
    assert [e[0] for e in serial] == KEYS
    for concurrency in (2, 8):
        parallel = list_objects_parallel(store, concurrency=concurrency, page_size=PAGE)
        assert entries(parallel) == serial, concurrency
    for prefix in ("n/", "d/1/", "z/", "nothing-here/"):
        want = entries(list_objects(store, prefix, page_size=PAGE))
        got = entries(list_objects_parallel(store, prefix, concurrency=4, page_size=PAGE))
        assert got == want, prefix
    rng = KeyRange("d/2", "n/00150")
    want = entries(list_objects(store, key_range=rng, page_size=PAGE))
    got = entries(list_objects_parallel(store, key_range=rng, concurrency=4, page_size=PAGE))
    assert got == want and want


@pytest.mark.parametrize("list_version", [2, 1])
def test_an_empty_or_one_page_bucket_costs_the_serial_requests(request, make_bucket, list_version):
    for name in ("ceph", "swift", "moto"):
        info = server_info(request, name)
        ep = make_bucket(info, name="src")
        with FaultProxy(info["endpoint_url"]) as proxy:
            store = store_of(info, ep.bucket, url=proxy.url, list_version=list_version)
            for keys in ([], ["one", "two", "three"]):
                for key in keys:
                    ep.put(key, b"x", size=1)
                proxy.requests.clear()
                serial = entries(list_objects(store))
                serial_gets = list_gets(proxy)
                proxy.requests.clear()
                assert entries(list_objects_parallel(store, concurrency=8)) == serial
                assert list_gets(proxy) == serial_gets, (name, keys)
                assert len(serial_gets) == 1


def test_several_list_requests_are_on_the_wire_at_once(ceph, make_bucket):
    ep = make_bucket(ceph, name="src")
    client = raw_client(ceph)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=ep.bucket, Key=f"{i:04d}", Body=b""), range(200)
            )
        )
    with FaultProxy(ceph["endpoint_url"]) as proxy:
        proxy.delay_if = lambda method, path: 0.3 if method == "GET" else 0.0
        store = store_of(ceph, ep.bucket, url=proxy.url)
        keys = [o.key for o in list_objects_parallel(store, concurrency=8, page_size=10)]
        assert keys == [f"{i:04d}" for i in range(200)]
        arrivals = sorted(t for t, method, _ in proxy.requests if method == "GET")
    # Each request is held 0.3 s: requests that arrive within it were in flight together.
    most = max(bisect.bisect_left(arrivals, t + 0.25) - i for i, t in enumerate(arrivals))
    assert most >= 3, arrivals
    # And fewer round trips than the 20 pages one at a time would take.
    assert arrivals[-1] - arrivals[0] < 19 * 0.3


def test_a_failure_mid_listing_is_raised_after_the_keys_below_it(ceph, make_bucket):
    ep = make_bucket(ceph, name="src")
    client = raw_client(ceph)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: client.put_object(Bucket=ep.bucket, Key=f"{i:04d}", Body=b""), range(120)
            )
        )
    with FaultProxy(ceph["endpoint_url"]) as proxy:
        seen = {"n": 0}

        def after_five(method: str, path: str) -> bool:
            if method != "GET":
                return False
            seen["n"] += 1
            return seen["n"] > 5

        proxy.fail_if = after_five
        store = store_of(ceph, ep.bucket, url=proxy.url, max_attempts=2)
        got: list[str] = []
        with pytest.raises(EndpointError):
            for o in list_objects_parallel(store, concurrency=4, page_size=10, policy=FAST):
                got.append(o.key)
        assert got == [f"{i:04d}" for i in range(len(got))]  # what came was in order
        assert len(got) < 120
    assert wait_for_no_listing_threads()


def wait_for_no_listing_threads(timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("list-")]:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("list_version", [2, 1])
def test_split_ranges_cover_every_key_once(filled, list_version):
    _, info, bucket = filled
    store = store_of(info, bucket, list_version=list_version)
    for prefix, count in (("", 5), ("", 1), ("n/", 4), ("d/", 3), ("nothing-here/", 4)):
        ranges = split_ranges(store, prefix, count, concurrency=4, page_size=PAGE)
        assert 1 <= len(ranges) <= count
        assert ranges[0].start_after is None and ranges[-1].end is None
        assert all(a.end == b.start_after for a, b in zip(ranges, ranges[1:], strict=False))
        parts = [[o.key for o in list_objects(store, prefix, key_range=r)] for r in ranges]
        assert [k for part in parts for k in part] == [k for k in KEYS if k.startswith(prefix)]
        if any(parts):
            assert all(parts), (prefix, ranges)  # no empty range
    # Enough keys for the count: that many ranges, roughly even (none over half the keys).
    ranges = split_ranges(store, "n/", 4, concurrency=4, page_size=100)
    sizes = [len(list(list_objects(store, "n/", key_range=r))) for r in ranges]
    under = len([k for k in KEYS if k.startswith("n/")])
    assert len(ranges) == 4 and sum(sizes) == under and max(sizes) <= under // 2, sizes


def test_split_ranges_of_a_one_page_bucket_cost_one_request(moto_servers, make_bucket):
    info = moto_servers[0]
    ep = make_bucket(info, name="src")
    for i in range(40):
        ep.put(f"k{i:02d}", b"", size=0)
    with FaultProxy(info["endpoint_url"]) as proxy:
        store = store_of(info, ep.bucket, url=proxy.url)
        ranges = split_ranges(store, "", 4, concurrency=8)
        assert len(list_gets(proxy)) == 1
    sizes = [len(list(list_objects(ep, key_range=r))) for r in ranges]
    assert sizes == [10, 10, 10, 10]


# --------------------------------------------------------------------------- call sequence


class _Numbered:
    """The sorted keys ``k/00000000``, ``k/00000001``, ... without holding them."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> str:
        return f"k/{i:08d}"


class GeneratedStore:
    """A stand-in Store serving pages of generated keys: a call-sequence and memory check
    (how many pages the listing holds), not a compatibility claim. It counts the pages it
    has handed out; the reader counts those it has finished."""

    name = "generated"
    bucket = "generated"

    def __init__(self, count: int, *, shuffle_page: int | None = None) -> None:
        self.keys = _Numbered(count)
        self.cfg = EndpointConfig(name="generated", bucket="generated")
        self.served = 0
        self.shuffle_page = shuffle_page
        self.lock = threading.Lock()

    def list_page(self, prefix="", *, page_size=1000, marker=None, start_after=None) -> Page:
        after = marker if marker is not None else start_after
        first = 0 if after is None else bisect.bisect_right(self.keys, after)
        last = min(first + page_size, len(self.keys))
        objects = [ObjectInfo(self.keys[i], 1, "e") for i in range(first, last)]
        with self.lock:
            self.served += 1
            if self.served == self.shuffle_page:
                objects.reverse()  # a server that pages out of order
        truncated = last < len(self.keys)
        return Page(objects, truncated, objects[-1].key if truncated else None)


def live_entries() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is ObjectInfo)


def test_a_large_listing_holds_a_bounded_number_of_pages():
    store = GeneratedStore(300_000)
    concurrency, depth, max_ranges = 8, 6, 16
    held = count = 0
    previous = ""
    for o in list_objects_parallel(
        store, concurrency=concurrency, depth=depth, max_ranges=max_ranges, policy=FAST
    ):
        assert o.key > previous
        previous = o.key
        count += 1
        if count % 1000 == 0:
            time.sleep(0.002)  # a slow reader: the workers run ahead of it as far as allowed
        if count % 25_000 == 0:
            held = max(held, live_entries())
    assert count == 300_000
    # The pages buffered in every range, one being read and one in flight per worker.
    assert 0 < held <= (max_ranges * depth + 1 + concurrency) * 1000, held
    assert wait_for_no_listing_threads()


def test_digits_count_keys_in_the_alphabet_their_page_uses():
    decimal = Digits([f"data/{i:09d}" for i in range(1000)], prefix="data/")
    # A page spans 999 numbers: three past data/000000999 is data/000003996, counted in
    # decimal, and back.
    assert decimal.ahead("data/000000999", 3) == "data/000003996"
    assert decimal.between("data/000000999", "data/000003999") == pytest.approx(3, rel=0.01)
    hexes = sorted(f"{i * 7919 % 65536:04x}aa" for i in range(1000))
    hex_digits = Digits(hexes)
    assert set(hex_digits.alphabet) <= set("0123456789abcdef")
    rnd = random.Random(11)
    for digits, keys in (
        (decimal, [f"data/{i:09d}" for i in range(0, 10**6, 997)]),
        (hex_digits, hexes),
    ):
        for _ in range(300):
            anchor = rnd.choice(keys)
            at = pages_ahead(anchor, digits, None, rnd.uniform(0.1, 50))
            assert at is None or at > anchor


def test_a_big_listing_opens_its_ranges_in_few_extra_requests():
    """The top range gallops and the others are halved by their keys' density: the
    workers are all busy within a few rounds, and the cuts cost few requests beyond the
    serial listing's (100 pages here)."""
    store = GeneratedStore(100_000)
    assert sum(1 for _ in list_objects_parallel(store, concurrency=8, policy=FAST)) == 100_000
    assert store.served <= 130, store.served


def test_a_page_out_of_order_is_still_detected_by_the_planner():
    store = GeneratedStore(20_000, shuffle_page=5)
    plans = plan_keys(
        list_objects_parallel(store, concurrency=4, policy=FAST),
        [iter(())],
        strategies=[Strategy()],
        key_filter=KeyFilter(),
    )
    with pytest.raises(ListingOrderError):
        for _ in plans:
            pass
    del plans  # as the bucket job drops its merge: the listing goes with it
    assert wait_for_no_listing_threads()


def test_closing_the_listing_early_stops_every_worker():
    listing = list_objects_parallel(GeneratedStore(100_000), concurrency=8, policy=FAST)
    for n, _ in enumerate(listing):
        if n == 5_000:
            break
    listing.close()
    assert wait_for_no_listing_threads()


# --------------------------------------------------------------------------- the bucket job


def test_the_bucket_job_reconciles_with_parallel_listings(moto_servers, make_bucket):
    a, b = moto_servers
    src, dst = make_bucket(a, name="source"), make_bucket(b, name="dest")
    keys = [f"dir{i % 7}/k{i:05d}" for i in range(3000)]
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda k: raw_client(a).put_object(Bucket=src.bucket, Key=k, Body=k.encode()), keys
            )
        )
        # The destination has most keys already, some changed, and some of its own.
        list(
            pool.map(
                lambda k: raw_client(b).put_object(Bucket=dst.bucket, Key=k, Body=k.encode()),
                keys[::2],
            )
        )
        list(
            pool.map(
                lambda k: raw_client(b).put_object(Bucket=dst.bucket, Key=k, Body=b"old"),
                keys[1:300:2],
            )
        )
        extras = [f"dir3/zz{i}" for i in range(40)]
        list(
            pool.map(
                lambda k: raw_client(b).put_object(Bucket=dst.bucket, Key=k, Body=b"x"), extras
            )
        )
    src = Endpoint(dataclasses.replace(src.cfg, list_version=1))  # V1 on one side, V2 the other
    options = JobOptions(BucketConfig(workers=16, delete=True, list_concurrency=8))
    summary = sync_buckets(src, [dst], options)
    (d,) = summary.destinations
    assert summary.ok
    assert (d.listed, d.skipped, d.copied, d.deleted) == (3000, 1500, 1500, 40)
    assert [o.key for o in list_objects(dst)] == sorted(keys)
    summary = sync_buckets(src, [dst], options)
    (d,) = summary.destinations
    assert (d.listed, d.skipped, d.copied, d.deleted) == (3000, 3000, 0, 0)


# --------------------------------------------------------------------------- configuration


def test_list_concurrency_is_read_from_bucket_and_the_command_line(tmp_path):
    from s3s3.bucketjob.options import make_options
    from s3s3.config import load
    from s3s3.errors import ConfigError
    from s3s3.scripts.bucket import build_parser

    base = "[source]\nbucket_name = s\nendpoint_url = http://127.0.0.1:9\n[dest]\nbucket_name = d\n"
    ini = tmp_path / "s3s3.ini"
    ini.write_text(base)
    assert load(ini, search_path=[], env={}).bucket.list_concurrency == 8
    ini.write_text(base + "[bucket]\nlist_concurrency = 3\n")
    cfg = load(ini, search_path=[], env={}).bucket
    assert cfg.list_concurrency == 3
    assert make_options(cfg).bucket.list_concurrency == 3
    assert make_options(cfg, list_concurrency=1).bucket.list_concurrency == 1
    ini.write_text(base + "[bucket]\nlist_concurrency = 0\n")
    with pytest.raises(ConfigError, match="list_concurrency") as err:
        load(ini, search_path=[], env={})
    assert "[bucket]" in str(err.value) or "bucket" in str(err.value)
    args = build_parser().parse_args(["--config", str(ini), "--list-concurrency", "16"])
    assert args.list_concurrency == 16
