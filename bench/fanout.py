"""W8: two destinations, read once: source bytes read per destination byte written.

``python -m bench fanout`` copies W2's 10,000 x 4 KiB and W3's 4 x 256 MiB to two fresh
destination buckets: s3s3bucket in one run with two destination sections (one read of the
source feeds both, ``s3s3/fanout.py``), against rclone copy run once per destination, as
rclone has to. The tools take turns, round after round.

The figure that does not depend on the machine's load is **source bytes read per
destination byte written**, from RGW's own access log (the bytes of every GET of a key in
the source bucket, over the bytes the destinations hold at the end): the target is 1/N =
0.5. Beside it, the wall time to both destinations in step, the throughput over the bytes
written, and the peak RSS of the process (rclone's two runs: the larger). Both destinations
are verified (every key, size and md5) after each run.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from .paths import RESULTS_DIR

DESTINATIONS = 2


def source_get_bytes(server, start: int, end: int, bucket: str) -> tuple[int, int]:
    """The bytes and the number of the GETs of keys in ``bucket`` RGW logged in between."""
    requests, _ = server.access_log.read(start, end)
    gets = [r for r in requests if r.method == "GET" and r.bucket == bucket and r.key]
    return sum(r.bytes for r in gets), len(gets)


def fanout(args, *, run_dir: Path, log) -> int:
    from . import data
    from .context import Context, Sizes
    from .measure import run_timed
    from .peers import rclone
    from .peers import s3s3 as s3s3_peer
    from .report import git_revision, machine
    from .servers import start_server
    from .workloads import bucket_name

    sizes = Sizes.quick() if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 2)
    began = time.monotonic()
    load_start = os.getloadavg()
    server = start_server(force_moto=args.moto, log=log)
    if server.access_log is None:
        log("fanout: needs Ceph's access log to count the source's bytes (no moto fallback)")
        server.stop()
        return 1
    ctx = Context(server=server, run_dir=run_dir, sizes=sizes, runs=runs, log=log)
    records: list[dict] = []
    ok = True
    try:
        rclone.ensure(ctx)
        sets = [
            data.make_small(ctx, "w8-small", sizes.w2_count, sizes.small_bytes),
            data.make_large(ctx, "w8-large", sizes.w3_count, sizes.w3_bytes, keep_files=False),
        ]
        client = server.client("src")
        for run in range(runs):
            for ds in sets:
                for tool in ("s3s3", "rclone"):
                    dsts = [bucket_name("w8", ds.name, tool, run, i) for i in range(DESTINATIONS)]
                    for d in dsts:
                        data.create_bucket(ctx, d)
                    work = run_dir / f"{ds.name}-{tool}-{run}"
                    work.mkdir(parents=True, exist_ok=True)
                    start = server.access_log.mark(client)
                    if tool == "s3s3":
                        config = s3s3_peer.write_ini(
                            ctx, work / "bench.ini", src_bucket=ds.bucket, dst_buckets=dsts
                        )
                        argv = [ctx.python, "-m", "s3s3.scripts.bucket", "--config", str(config)]
                        m = run_timed(
                            argv, log_path=work / "output.log", env=s3s3_peer._env(), cwd=work
                        )
                        wall, status, rss = m.wall_s, m.exit_status, m.peak_rss_mb
                        cpu = m.cpu_s
                        commands = [" ".join(argv)]
                    else:
                        wall, status, rss, cpu, commands = 0.0, 0, 0.0, 0.0, []
                        for i, d in enumerate(dsts):
                            argv, env, cwd = rclone.copy_default(ctx, ds.bucket, d, work)
                            m = run_timed(argv, log_path=work / f"output-{i}.log", env=env, cwd=cwd)
                            wall += m.wall_s
                            cpu += m.cpu_s or 0.0
                            status = status or m.exit_status
                            rss = max(rss or 0.0, m.peak_rss_mb or 0.0)
                            commands.append(" ".join(argv))
                    end = server.access_log.mark(client)
                    read, gets = source_get_bytes(server, start, end, ds.bucket)
                    checks = [data.verify(ctx, ds, d) for d in dsts]
                    verified = all(c.ok for c in checks) and status == 0
                    ok = ok and verified
                    written = ds.total_bytes * DESTINATIONS
                    rec = {
                        "workload": "W8",
                        "set": ds.name,
                        "objects": ds.count,
                        "bytes": ds.total_bytes,
                        "tool": "s3s3bucket (2 destinations, 1 run)"
                        if tool == "s3s3"
                        else "rclone copy (1 run per destination)",
                        "run": run,
                        "ok": verified,
                        "exit_status": status,
                        "wall_s": round(wall, 3),
                        "cpu_s": round(cpu, 3) if cpu else None,
                        "peak_rss_mb": round(rss, 1) if rss else None,
                        "source_get_bytes": read,
                        "source_gets": gets,
                        "read_per_written": round(read / written, 4),
                        "mb_per_s_written": round(written / wall / 1e6, 2),
                        "objects_per_s": round(ds.count * DESTINATIONS / wall, 1),
                        "verified": "; ".join(c.summary() for c in checks),
                        "commands": commands,
                    }
                    records.append(rec)
                    log(
                        f"  W8 {ds.name:9s} run {run} {tool:6s} {wall:8.2f} s  "
                        f"read/written {rec['read_per_written']:.3f}  GETs {gets:,}  "
                        f"{rec['mb_per_s_written']:7.1f} MB/s  rss {rss or 0:5.0f} MB  "
                        + ("ok" if verified else "FAILED: " + rec["verified"])
                    )
                    for d in dsts:
                        data.empty_bucket(ctx, d, remove=True)
    except KeyboardInterrupt:
        log("interrupted: the results are partial")
        ok = False
    finally:
        data.clear_local()
        server.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "python -m bench fanout"
        + (f" --runs {args.runs}" if args.runs else "")
        + (" --quick" if args.quick else ""),
        "machine": machine(),
        "server": server.version,
        "s3s3_revision": git_revision(),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "duration_min": round((time.monotonic() - began) / 60, 1),
    }
    text = render(meta, records)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-w8-fanout" + ("-quick" if args.quick else "")
    (RESULTS_DIR / f"{stem}.md").write_text(text)
    (RESULTS_DIR / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "records": records}, indent=1) + "\n"
    )
    print(text)
    log(f"fanout: {RESULTS_DIR / stem}.md in {meta['duration_min']} min")
    return 0 if ok else 1


def render(meta: dict, records: list[dict]) -> str:
    lines = [
        f"# W8: two destinations, {meta['date']}",
        "",
        f"`{meta['command']}` on {meta['server']}, s3s3 at {meta['s3s3_revision']}; "
        f"load average {meta['load_start'][0]} at the start, {meta['load_end'][0]} at the end; "
        f"{meta['duration_min']} min.",
        "",
        "Source bytes read per destination byte written come from RGW's access log (target "
        "for s3s3: 1/2 = 0.5). Times are to both destinations in step (rclone: its two runs "
        "added); MB/s over the bytes written to both. Medians over the runs, range in brackets.",
        "",
        "| set | tool | read / written | source GETs | wall s | MB/s written | obj/s written "
        "| CPU s | peak RSS MB | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["set"], r["tool"]), []).append(r)
    for (name, tool), recs in groups.items():

        def med(field: str, recs=recs) -> str:
            vals = [r[field] for r in recs if r.get(field) is not None]
            if not vals:
                return "-"
            mid = statistics.median(vals)
            spread = f" [{min(vals):g}-{max(vals):g}]" if len(vals) > 1 else ""
            return f"{mid:g}{spread}"

        lines.append(
            f"| {name} | {tool} | {med('read_per_written')} | {med('source_gets')} | "
            f"{med('wall_s')} | {med('mb_per_s_written')} | {med('objects_per_s')} | "
            f"{med('cpu_s')} | {med('peak_rss_mb')} | "
            f"{'yes' if all(r['ok'] for r in recs) else 'NO'} |"
        )
    return "\n".join(lines) + "\n"
