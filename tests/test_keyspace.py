"""Key ranges and split points (s3s3.keyspace), and listing a range on real servers: ranges
split anywhere cover a bucket's keys exactly once, on Ceph RGW, Swift s3api and moto, with
ListObjectsV2 and V1, through the lean and the boto3 data paths."""

from __future__ import annotations

import random

import pytest

from s3s3.keyspace import MAX_KEY_BYTES, KeyRange, midpoint
from s3s3.listing import list_objects
from tests.conftest import raw_client

ALPHABET = ["a", "b", "z", "\x01", "\x02", "\x7f", "\x80", "é", "\ud7ff", "\ue000", "0", "/"]
ALPHABET.append("\U0010ffff")


def random_text(rnd: random.Random, longest: int = 6) -> str:
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, longest)))


def test_a_midpoint_lies_strictly_between_and_is_a_key_wherever_one_exists():
    rnd = random.Random(16)
    for _ in range(50_000):
        lo, hi = sorted((random_text(rnd), random_text(rnd)))
        if lo == hi:
            continue
        upper = None if rnd.random() < 0.2 else hi
        m = midpoint(lo, upper)
        if m is None:
            # Only strings of NUL characters lie between lo and lo + "\x01": no key.
            assert upper == lo + "\x01", (lo, upper)
            continue
        assert lo < m, (lo, upper, m)
        assert upper is None or m < upper, (lo, upper, m)
        assert len(m.encode("utf-8")) <= MAX_KEY_BYTES


def test_an_open_range_is_split_within_ascii_first():
    assert midpoint("key-00999", None) == "u"
    # Bisecting down to the digits takes a few dozen splits, not hundreds of thousands.
    lo, hi, steps = "key-00999", "u", 0
    while not (hi or "").startswith("key-"):
        m = midpoint(lo, hi)
        assert m is not None
        hi = m if m > "key-0" else hi
        if m <= "key-0":
            break
        steps += 1
    assert steps < 40


def test_a_prefix_bounds_an_open_range_and_is_kept_by_the_split():
    assert midpoint("logs/", None, prefix="logs/").startswith("logs/")
    # An upper bound outside the prefix means the end of the prefix's keys.
    assert midpoint("logs/x", "m", prefix="logs/").startswith("logs/")
    with pytest.raises(ValueError, match="prefix"):
        midpoint("data/x", None, prefix="logs/")
    with pytest.raises(ValueError, match="between"):
        midpoint("b", "a")


def test_a_key_range_holds_the_keys_after_its_start_up_to_its_end():
    r = KeyRange("b", "d")
    assert "b" not in r and "c" in r and "d" in r and "da" not in r
    assert r.past("da") and not r.past("d")
    assert "" in KeyRange() and "anything" in KeyRange(None, "b") and "zz" in KeyRange("b")
    low, high = r.split("c")
    assert (low, high) == (KeyRange("b", "c"), KeyRange("c", "d"))
    with pytest.raises(ValueError, match="not strictly inside"):
        r.split("d")
    with pytest.raises(ValueError, match="empty key range"):
        KeyRange("d", "b")
    assert str(r) == "('b', 'd']" and str(KeyRange()) == "(, ]"


KEYS = sorted(
    [f"k/{i:04d}" for i in range(0, 230, 3)]
    + ["a", "a b", "a+b", "a%2Fb", "k", "k/", "z/é", "z/日本", "z/\U0001f600", "zz"]
)


@pytest.fixture(params=["ceph", "swift", "moto"])
def listed_bucket(request, make_bucket):
    """A bucket of KEYS on each server (moto: the first of the pair)."""
    info = request.getfixturevalue("moto_servers" if request.param == "moto" else request.param)
    if request.param == "moto":
        info = info[0]
    endpoint = make_bucket(info, name="src")
    client = raw_client(info)
    for key in KEYS:
        client.put_object(Bucket=endpoint.bucket, Key=key, Body=b"x")
    return info, endpoint.bucket


@pytest.mark.parametrize("list_version", [2, 1])
@pytest.mark.parametrize("data_path", ["raw", "botocore"])
def test_ranges_split_anywhere_list_every_key_once(listed_bucket, list_version, data_path, request):
    from s3s3.store.endpoint import Endpoint
    from tests.conftest import endpoint_config

    info, bucket = listed_bucket
    store = Endpoint(
        endpoint_config(info, bucket, name="src", list_version=list_version, data_path=data_path)
    )
    rnd = random.Random(f"{request.node.name}")
    # Split points that are keys, between keys, and outside every key.
    points = sorted(set(rnd.sample(KEYS, 5) + ["k/00", "k/0100x", "b", "\x7f"]))
    bounds = [None, *points, None]
    listed = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        rng = KeyRange(lo, hi)
        keys = [o.key for o in list_objects(store, key_range=rng, page_size=7)]
        assert all(k in rng for k in keys), (rng, keys)
        listed.extend(keys)
    assert listed == KEYS
    # And under a prefix.
    under = [o.key for o in list_objects(store, "k/", key_range=KeyRange("k/0100"), page_size=7)]
    assert under == [k for k in KEYS if k.startswith("k/") and k > "k/0100"]
