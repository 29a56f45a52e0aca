"""W6: s3s3's planner over generated listings of N keys, in a fresh process.

    python -m bench.planprobe --keys 1000000

Uploading a million objects to a local RGW would take longer than the whole benchmark, so
the listings are generated: key-sorted ``ObjectInfo`` streams, in pages of 1,000 handed
through :func:`s3s3.listing.prefetch` (the thread that holds the listing pages ahead, as the
bucket job does) into :func:`s3s3.plan.plan_keys`. The destination holds 90% of the keys
identical, 5% changed (another ETag), 5% missing, plus 1% keys of its own. XML parsing and
the network are not in this figure; the copies are not either.

Prints one JSON line: peak RSS (VmHWM) after the imports and after planning, the actions
counted, wall and CPU seconds of the planning alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator
from datetime import datetime, timezone

PAGE = 1000


def vm_hwm_mb() -> float:
    """This process's peak RSS so far (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def source_pages(n: int, info_cls) -> Iterator[list]:
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    page = []
    for i in range(n):
        page.append(
            info_cls(key=f"s3s3bench/w6/{i:09d}", size=4096, etag=f"{i:032x}", last_modified=when)
        )
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


def destination_pages(n: int, info_cls) -> Iterator[list]:
    when = datetime(2024, 1, 2, tzinfo=timezone.utc)
    page = []
    for i in range(n):
        r = i % 20
        key = f"s3s3bench/w6/{i:09d}"
        if r != 0:  # 5% missing
            etag = f"{i + 1:032x}" if r == 1 else f"{i:032x}"  # 5% changed
            page.append(info_cls(key=key, size=4096, etag=etag, last_modified=when))
        if i % 100 == 7:  # 1% only at the destination ("~" sorts after the digits)
            page.append(info_cls(key=key + "~old", size=10, etag=f"{i:032x}", last_modified=when))
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


def flatten(pages: Iterator[list]) -> Iterator:
    for page in pages:
        yield from page


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    args = p.parse_args(argv)

    from s3s3 import plan
    from s3s3.model import ObjectInfo

    try:
        from s3s3.listing import prefetch
    except ImportError:  # an s3s3 without the read-ahead: plain generators
        prefetch = None

    rss_imports = vm_hwm_mb()
    began, cpu0 = time.monotonic(), time.process_time()
    src = source_pages(args.keys, ObjectInfo)
    dst = destination_pages(args.keys, ObjectInfo)
    if prefetch is not None:
        src, dst = prefetch(src, name="list-source"), prefetch(dst, name="list-dest")
    counts: dict[str, int] = {}
    for item in plan.plan_keys(flatten(src), [flatten(dst)], strategies=[plan.Strategy()]):
        action = item.actions[0]
        name = action.value if action is not None else "none"
        counts[name] = counts.get(name, 0) + 1
    wall, cpu = time.monotonic() - began, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "keys": args.keys,
                "actions": counts,
                "plan_wall_s": round(wall, 3),
                "plan_cpu_s": round(cpu, 3),
                "rss_after_imports_mb": round(rss_imports, 1),
                "peak_rss_mb": round(vm_hwm_mb(), 1),
                "planning_growth_mb": round(vm_hwm_mb() - rss_imports, 1),
                "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),
                "read_ahead": prefetch is not None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
