"""The parallel lister without a server: ``python bench/listing_generated.py [--keys N]
[--delay S] [--concurrency 8,16]``.

A stand-in Store serves pages of generated keys (four layouts: numbered, numbered under
ten prefixes as W11 fills, hex hashes, words under a few prefixes) and sleeps ``--delay``
(20 ms) per page: a store far away whose own CPU costs nothing. It prints the serial and the
parallel listing's time and requests, and their ratio: what the lister does with latency
alone, which W11 on the bench's Ceph cannot show when RGW's CPU is the limit. Not a
compatibility claim (the pages are generated), and no target is asserted.
"""

from __future__ import annotations

import argparse
import bisect
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3s3.config import EndpointConfig  # noqa: E402
from s3s3.listing import list_objects, list_objects_parallel  # noqa: E402
from s3s3.model import ObjectInfo  # noqa: E402
from s3s3.store.base import Page  # noqa: E402


class GeneratedStore:
    """Pages of ``keys`` (sorted), ``delay`` seconds each; counts its requests."""

    name = bucket = "generated"

    def __init__(self, keys: list[str], delay: float) -> None:
        self.keys, self.delay = keys, delay
        self.cfg = EndpointConfig(name="generated", bucket="generated")
        self.calls = 0
        self.lock = threading.Lock()

    def list_page(self, prefix="", *, page_size=1000, marker=None, start_after=None) -> Page:
        time.sleep(self.delay)
        with self.lock:
            self.calls += 1
        after = marker if marker is not None else start_after
        first = 0 if after is None else bisect.bisect_right(self.keys, after)
        last = min(first + page_size, len(self.keys))
        objects = [ObjectInfo(self.keys[i], 1, "e") for i in range(first, last)]
        truncated = last < len(self.keys)
        return Page(objects, truncated, objects[-1].key if truncated else None)


def layouts(count: int) -> dict[str, list[str]]:
    rnd = random.Random(1)
    words = ["logs", "img", "docs", "a", "zeta"]
    return {
        "numbered": [f"data/{i:09d}" for i in range(count)],
        "W11's (ten prefixes)": sorted(f"data/{i % 10}/{i:08d}" for i in range(count)),
        "hex": sorted(f"{rnd.getrandbits(64):016x}" for _ in range(count)),
        "words": sorted(
            {f"{rnd.choice(words)}/{rnd.getrandbits(32)}/{i}.txt" for i in range(count)}
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--delay", type=float, default=0.02)
    p.add_argument("--concurrency", default="8,16")
    args = p.parse_args(argv)
    print("| keys | serial s (requests) | concurrency | parallel s (requests) | x serial |")
    print("|---|---|---|---|---|")
    for name, keys in layouts(args.keys).items():
        serial = GeneratedStore(keys, args.delay)
        started = time.perf_counter()
        count = sum(1 for _ in list_objects(serial))
        serial_s = time.perf_counter() - started
        assert count == len(keys)
        for n in (int(c) for c in args.concurrency.split(",")):
            store = GeneratedStore(keys, args.delay)
            started = time.perf_counter()
            listed = [o.key for o in list_objects_parallel(store, concurrency=n)]
            parallel_s = time.perf_counter() - started
            assert listed == keys, name
            print(
                f"| {name} | {serial_s:.2f} ({serial.calls}) | {n} | "
                f"{parallel_s:.2f} ({store.calls}) | {serial_s / parallel_s:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
