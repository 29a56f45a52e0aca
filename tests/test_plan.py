"""The planner on plain lists: merge, key order, filters, strategies. No server, no I/O."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from s3s3.model import ObjectInfo
from s3s3.plan import (
    Action,
    KeyFilter,
    ListingOrderError,
    Strategy,
    Verdict,
    decide,
    merge,
    plan_keys,
    reason,
)

MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def info(
    key: str,
    size: int = 1,
    etag: str = MD5_A,
    *,
    md5: str | None = None,
    at: datetime | None = None,
) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag, last_modified=at or T0, md5=md5)


def infos(*keys: str) -> list[ObjectInfo]:
    return [info(k) for k in keys]


def side(row, dest: int = 0) -> str:
    """Where a merged row's key is, seen from destination ``dest``."""
    dst = row.dsts[dest]
    if row.src is None:
        return "neither" if dst is None else "destination only"
    return "source only" if dst is None else "both"


def s3_sorted(keys):
    """S3's order: by UTF-8 bytes."""
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogatepass"))


def utf16_sorted(keys):
    """The order of UTF-16 code units (Java, JavaScript): not S3's."""
    return sorted(keys, key=lambda k: k.encode("utf-16-be", "surrogatepass"))


# --------------------------------------------------------------------------- merge


def test_merge_splits_source_only_destination_only_and_both():
    rows = list(merge(infos("a", "b", "d"), [infos("b", "c", "d", "e")]))
    assert [(r.key, side(r)) for r in rows] == [
        ("a", "source only"),
        ("b", "both"),
        ("c", "destination only"),
        ("d", "both"),
        ("e", "destination only"),
    ]
    both = rows[1]
    assert both.src.key == "b" and both.dsts[0].key == "b"


def test_merge_of_empty_listings():
    assert list(merge([], [[]])) == []
    assert [side(r) for r in merge(infos("a"), [[]])] == ["source only"]
    assert [side(r) for r in merge([], [infos("a")])] == ["destination only"]


def test_merge_with_two_destinations_gives_one_row_per_key_in_order():
    rows = list(merge(infos("b", "d"), [infos("a", "b"), infos("b", "c", "d")]))
    assert [r.key for r in rows] == ["a", "b", "c", "d"]
    assert [(side(r, 0), side(r, 1)) for r in rows] == [
        ("destination only", "neither"),
        ("both", "both"),
        ("neither", "destination only"),
        ("source only", "both"),
    ]


def test_merge_consumes_iterators_lazily():
    """The planner never materialises a listing: it reads one entry ahead per side."""
    pulled = []

    def listing(name, count):
        for n in range(count):
            pulled.append(name)
            yield info(f"k{n:06d}")

    rows = merge(listing("src", 1_000_000), [listing("dst", 1_000_000)])
    first = list(itertools.islice(rows, 3))
    assert [r.key for r in first] == ["k000000", "k000001", "k000002"]
    assert len(pulled) <= 10


# Keys whose order differs between UTF-8 bytes (S3) and UTF-16 code units, and keys
# around the punctuation that sorts before '/'.
TRICKY = [
    "a",
    "a-b",
    "a/b",
    "a.b",
    "a\x7f",
    "a\u00e9",
    "a\u4e2d",
    "a\ud7ff",
    "a\ue000",
    "a\uffff",
    "a\U0001f600",
    "a\U0010ffff",
    "z",
    "Z",
    "\u00e9t\u00e9",
    "e\u0301",
]


def test_python_string_order_is_utf8_byte_order():
    """Why merge compares ``str``: code point order is UTF-8 byte order, surrogates too."""
    with_surrogates = TRICKY + ["a\ud800", "a\udbff\udfff", "a\udc80"]
    assert sorted(with_surrogates) == s3_sorted(with_surrogates)
    for x, y in itertools.product(with_surrogates, repeat=2):
        assert (x < y) == (x.encode("utf-8", "surrogatepass") < y.encode("utf-8", "surrogatepass"))


def test_merge_uses_s3_byte_order_where_utf16_order_differs():
    keys = s3_sorted(TRICKY)
    assert keys != utf16_sorted(keys)  # the case is real: U+1F600 sorts before U+FFFF in UTF-16
    assert keys.index("a\uffff") < keys.index("a\U0001f600")
    src = infos(*keys)
    dst = infos(*[k for k in keys if k != "a\uffff"] + ["a\U0001f601"])
    dst = [info(k) for k in s3_sorted(x.key for x in dst)]
    rows = {r.key: side(r) for r in merge(src, [dst])}
    assert rows.pop("a\uffff") == "source only"
    assert rows.pop("a\U0001f601") == "destination only"
    assert set(rows.values()) == {"both"}
    assert len(rows) == len(keys) - 1


def test_a_listing_in_utf16_order_is_refused_not_misplanned():
    keys = utf16_sorted(TRICKY)
    with pytest.raises(ListingOrderError) as caught:
        list(merge(infos(*s3_sorted(TRICKY)), [infos(*keys)]))
    assert caught.value.side == 1
    assert "destination listing 0 is not in UTF-8 byte order" in str(caught.value)


def test_a_source_listing_out_of_order_is_refused():
    with pytest.raises(ListingOrderError) as caught:
        list(merge(infos("a", "c", "b"), [[]]))
    assert caught.value.side == 0
    assert str(caught.value) == (
        "the source listing is not in UTF-8 byte order: 'b' came after 'c'; a merge of "
        "unordered listings would copy and delete the wrong keys"
    )


def test_a_repeated_key_is_refused():
    with pytest.raises(ListingOrderError, match="^the source listing repeats 'b'; a merge"):
        list(merge(infos("a", "b", "b"), [[]]))


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "include, exclude, key, kept",
    [
        ((), (), "anything", True),
        (("*.jpg",), (), "photos/a.jpg", True),
        (("*.jpg",), (), "photos/a.png", False),
        (("logs/*",), (), "logs/2024/01/x", True),  # '*' crosses '/'
        (("logs/*",), (), "other/logs/x", False),
        (("*.jpg", "*.png"), (), "a.png", True),
        ((), ("tmp/*",), "tmp/x", False),
        ((), ("tmp/*",), "data/tmp/x", True),  # patterns match the whole key
        (("*.jpg",), ("private/*",), "private/a.jpg", False),
        (("*.JPG",), (), "a.jpg", False),  # case-sensitive, as S3 keys are
        (("file?.txt",), (), "file1.txt", True),
        (("file[0-9].txt",), (), "filex.txt", False),
        (("a\U0001f600*",), (), "a\U0001f600b", True),
    ],
)
def test_key_filter(include, exclude, key, kept):
    assert KeyFilter(include, exclude)(key) is kept


def test_filtered_keys_are_neither_copied_nor_deleted():
    plans = list(
        plan_keys(
            infos("a.jpg", "b.txt"),
            [infos("c.jpg", "d.txt")],
            strategies=[Strategy()],
            delete=True,
            key_filter=KeyFilter(include=["*.jpg"]),
        )
    )
    assert [(p.key, p.actions) for p in plans] == [
        ("a.jpg", (Action.COPY,)),
        ("c.jpg", (Action.DELETE,)),
    ]


# --------------------------------------------------------------------------- strategies


def test_decide_truth_table():
    older, newer = T0, T0 + timedelta(hours=1)
    multipart = "9b2cf535f27731c974343645a3985328-3"
    cases = [
        # (src, dst, size_only, verify_md5, verdict) -- one line per row of the table
        (info("k"), None, False, False, Verdict.COPY),
        (info("k", 1), info("k", 2), False, False, Verdict.COPY),
        (info("k", 1, MD5_A), info("k", 1, MD5_B), True, False, Verdict.SKIP),
        (info("k", 1, MD5_A), info("k", 1, MD5_A), False, False, Verdict.SKIP),
        (info("k", 1, MD5_A), info("k", 1, MD5_B), False, False, Verdict.COPY),
        (info("k", 1, multipart), info("k", 1, multipart), False, True, Verdict.SKIP),
        (info("k", 1, multipart), info("k", 1, MD5_A), False, True, Verdict.HASH),
        (
            info("k", 1, multipart, at=older),
            info("k", 1, "x-2", at=newer),
            False,
            False,
            Verdict.SKIP,
        ),
        (
            info("k", 1, multipart, at=newer),
            info("k", 1, "x-2", at=older),
            False,
            False,
            Verdict.COPY,
        ),
        # s3s3-md5 metadata counts as the md5 of a multipart object
        (info("k", 1, multipart, md5=MD5_A), info("k", 1, MD5_A), False, True, Verdict.SKIP),
        (info("k", 1, multipart, md5=MD5_B), info("k", 1, MD5_A), False, True, Verdict.COPY),
    ]
    for src, dst, size_only, verify_md5, expected in cases:
        assert decide(src, dst, size_only=size_only, verify_md5=verify_md5) is expected, (
            src,
            dst,
            size_only,
            verify_md5,
        )


def test_plan_keys_actions_per_destination():
    src = [info("changed", etag=MD5_B), info("multi", 5, "ab-2"), info("new"), info("same")]
    dst1 = [info("changed"), info("extra"), info("multi", 5, "cd-2"), info("same")]
    dst2 = [info("multi", 5, "cd-2"), info("same")]
    plans = {
        p.key: p.actions
        for p in plan_keys(
            src, [dst1, dst2], strategies=[Strategy(verify_md5=True), Strategy(size_only=True)]
        )
    }
    assert plans == {
        "changed": (Action.COPY, Action.COPY),
        "extra": (Action.KEEP, None),
        "multi": (Action.HASH, Action.SKIP),
        "new": (Action.COPY, Action.COPY),
        "same": (Action.SKIP, Action.SKIP),
    }


def test_plan_keys_deletes_destination_only_keys_only_when_asked():
    for delete, expected in ((False, Action.KEEP), (True, Action.DELETE)):
        (plan,) = plan_keys([], [infos("extra")], strategies=[Strategy()], delete=delete)
        assert plan.actions == (expected,)


def test_plan_keys_needs_one_strategy_per_destination():
    with pytest.raises(ValueError, match="2 destinations but 1 strategies"):
        list(plan_keys([], [[], []], strategies=[Strategy()]))


def test_reasons_for_the_dry_run():
    assert reason(Action.COPY, info("k", 3), None) == "new, 3 bytes"
    assert reason(Action.COPY, info("k", 3), info("k", 4)) == "size differs src(3) vs dst(4)"
    assert reason(Action.COPY, info("k", 1, MD5_A), info("k", 1, MD5_B)) == (
        f"md5 differs src({MD5_A}) vs dst({MD5_B})"
    )
    assert reason(Action.COPY, info("k", 1, "a-2"), info("k", 1, "b-2")) == (
        "destination older than source (size + mtime)"
    )
    assert reason(Action.DELETE, None, info("k")) == "not in the source"
