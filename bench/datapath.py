"""W8-W10: the data path's own workloads: fan-out, resume and the bandwidth limit.

Each mode starts the bench's Ceph, makes its source, runs s3s3 and rclone in turns, counts
what the source served from RGW's own access log (the bytes of every GET of a key in the
source bucket: a figure the machine's load does not change), verifies every destination
(every key, size and md5), and writes ``bench/results/DATE-<mode>.md`` and ``.json``.

- ``python -m bench fanout`` (W8): W2's 10,000 x 4 KiB and W3's 4 x 256 MiB to two fresh
  destination buckets: s3s3bucket in one run with two destination sections (one read of the
  source feeds both, ``s3s3/fanout.py``), against rclone copy run once per destination, as
  rclone has to. The figure is **source bytes read per destination byte written** (target
  1/N = 0.5), beside the wall time to both destinations in step, throughput over the bytes
  written and peak RSS (rclone's two runs: the larger).
- ``python -m bench resume`` (W9): a 1 GiB object copied in 64 MiB parts, the copy killed
  (SIGKILL) once RGW has logged 60% of its parts, then run again: the source bytes the second
  run reads and the parts it sends again (target: less than two parts read again), and the
  time to completion. rclone, which starts a multipart upload over, beside it.
- ``python -m bench bwlimit`` (W10): W3 with ``--bwlimit 20M`` for s3s3bucket and rclone:
  the rate achieved (source bytes over wall time) against the limit (target within 10%).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .paths import RESULTS_DIR

DESTINATIONS = 2


def source_get_bytes(server, start: int, end: int, bucket: str) -> tuple[int, int]:
    """The bytes and the number of the GETs of keys in ``bucket`` RGW logged in between."""
    requests, _ = server.access_log.read(start, end)
    gets = [r for r in requests if r.method == "GET" and r.bucket == bucket and r.key]
    return sum(r.bytes for r in gets), len(gets)


@dataclass
class Run:
    """One tool's invocation(s) toward a workload's destinations, measured."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    exit_status: int = 0
    commands: list[str] = field(default_factory=list)
    source_get_bytes: int = 0
    source_gets: int = 0

    def add(self, m, argv: list[str]) -> None:
        self.wall_s += m.wall_s
        self.cpu_s += m.cpu_s or 0.0
        self.peak_rss_mb = max(self.peak_rss_mb, m.peak_rss_mb or 0.0)
        self.exit_status = self.exit_status or m.exit_status
        self.commands.append(" ".join(argv))


@dataclass
class Session:
    """The server, the bench context and the records of one mode's run."""

    ctx: object
    server: object
    records: list[dict] = field(default_factory=list)
    ok: bool = True

    @contextmanager
    def counted(self, bucket: str) -> Iterator[Run]:
        """A :class:`Run` to fill in; on leaving, the source's GETs of ``bucket`` meanwhile
        are counted into it."""
        client = self.server.client("src")
        start = self.server.access_log.mark(client)
        measured = Run()
        yield measured
        end = self.server.access_log.mark(client)
        measured.source_get_bytes, measured.source_gets = source_get_bytes(
            self.server, start, end, bucket
        )

    def s3s3_bucket_argv(
        self,
        work: Path,
        src: str,
        dsts: list[str],
        args: tuple[str, ...] = (),
        dest_lines: tuple[str, ...] = (),
    ) -> tuple[list[str], dict, Path]:
        from .peers import s3s3 as s3s3_peer

        work.mkdir(parents=True, exist_ok=True)
        config = s3s3_peer.write_ini(
            self.ctx, work / "bench.ini", src_bucket=src, dst_buckets=dsts, dest_lines=dest_lines
        )
        argv = [self.ctx.python, "-m", "s3s3.scripts.bucket", "--config", str(config), *args]
        return argv, s3s3_peer._env(), work

    def rclone_argv(
        self, work: Path, src: str, dst: str, args: tuple[str, ...] = ()
    ) -> tuple[list[str], dict, Path]:
        from .peers import rclone

        work.mkdir(parents=True, exist_ok=True)
        argv, env, cwd = rclone.copy_default(self.ctx, src, dst, work)
        return [*argv[:-2], *args, *argv[-2:]], env, cwd

    @staticmethod
    def timed(run: Run, invocation: tuple[list[str], dict, Path]) -> None:
        from .measure import run_timed

        argv, env, cwd = invocation
        log_path = cwd / f"output-{len(run.commands)}.log"
        run.add(run_timed(argv, log_path=log_path, env=env, cwd=cwd), argv)

    def s3s3_bucket(
        self, run: Run, work: Path, src: str, dsts: list[str], args: tuple[str, ...] = ()
    ) -> None:
        self.timed(run, self.s3s3_bucket_argv(work, src, dsts, args))

    def rclone_copy(
        self, run: Run, work: Path, src: str, dst: str, args: tuple[str, ...] = ()
    ) -> None:
        self.timed(run, self.rclone_argv(work, src, dst, args))


@contextmanager
def session(args, *, run_dir: Path, log) -> Iterator[Session]:
    from . import data
    from .context import Context, Sizes
    from .peers import rclone
    from .servers import start_server

    sizes = Sizes.quick() if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 2)
    server = start_server(force_moto=args.moto, log=log)
    try:
        if server.access_log is None:
            raise SystemExit("needs Ceph's access log to count the source's bytes (no moto)")
        ctx = Context(server=server, run_dir=run_dir, sizes=sizes, runs=runs, log=log)
        rclone.ensure(ctx)
        yield Session(ctx=ctx, server=server)
    finally:
        data.clear_local()
        server.stop()


def finish(
    mode: str, title: str, args, sess: Session, began: float, load_start, log, render
) -> int:
    from .report import git_revision, machine

    flags = (f" --runs {args.runs}" if args.runs else "") + (" --quick" if args.quick else "")
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python -m bench {mode}{flags}",
        "machine": machine(),
        "server": sess.server.version,
        "s3s3_revision": git_revision(),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "duration_min": round((time.monotonic() - began) / 60, 1),
    }
    text = (
        f"# {title}, {meta['date']}\n\n"
        f"`{meta['command']}` on {meta['server']}, s3s3 at {meta['s3s3_revision']}; "
        f"load average {meta['load_start'][0]} at the start, {meta['load_end'][0]} at the "
        f"end; {meta['duration_min']} min.\n\n" + render(sess.records)
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-{mode}" + ("-quick" if args.quick else "")
    (RESULTS_DIR / f"{stem}.md").write_text(text)
    (RESULTS_DIR / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "records": sess.records}, indent=1) + "\n"
    )
    print(text)
    log(f"{mode}: {RESULTS_DIR / stem}.md in {meta['duration_min']} min")
    return 0 if sess.ok else 1


def median_cell(recs: list[dict], name: str) -> str:
    """The median of a field over runs, with its range when there are several."""
    vals = [r[name] for r in recs if r.get(name) is not None]
    if not vals:
        return "-"
    mid = statistics.median(vals)
    spread = f" [{min(vals):g}-{max(vals):g}]" if len(vals) > 1 else ""
    return f"{mid:g}{spread}"


def table_rows(records: list[dict], keys: tuple[str, ...], fields: tuple[str, ...]) -> list[str]:
    """One Markdown row per group of ``records`` with the same ``keys``: the keys, the
    median (and range) of each of ``fields``, and whether every run of the group was ok."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    rows = []
    for group, recs in groups.items():
        cells = [*map(str, group), *(median_cell(recs, f) for f in fields)]
        ok = "yes" if all(r["ok"] for r in recs) else "NO"
        rows.append(f"| {' | '.join(cells)} | {ok} |")
    return rows


def w2_and_w3(ctx, small: str, large: str) -> list:
    """W2's 10,000 x 4 KiB and W3's 4 x 256 MiB as sources of these names."""
    from . import data

    sizes = ctx.sizes
    return [
        data.make_small(ctx, small, sizes.w2_count, sizes.small_bytes),
        data.make_large(ctx, large, sizes.w3_count, sizes.w3_bytes, keep_files=False),
    ]


# --------------------------------------------------------------------------- W8


def fanout(args, *, run_dir: Path, log) -> int:
    from . import data
    from .workloads import bucket_name

    began, load_start = time.monotonic(), os.getloadavg()
    with session(args, run_dir=run_dir, log=log) as sess:
        ctx = sess.ctx
        sets = w2_and_w3(ctx, "w8-small", "w8-large")
        for run in range(ctx.runs):
            for ds in sets:
                for tool in ("s3s3", "rclone"):
                    dsts = [bucket_name("w8", ds.name, tool, run, i) for i in range(DESTINATIONS)]
                    for d in dsts:
                        data.create_bucket(ctx, d)
                    work = run_dir / f"{ds.name}-{tool}-{run}"
                    with sess.counted(ds.bucket) as m:
                        if tool == "s3s3":
                            sess.s3s3_bucket(m, work, ds.bucket, dsts)
                        else:
                            for d in dsts:
                                sess.rclone_copy(m, work, ds.bucket, d)
                    checks = [data.verify(ctx, ds, d) for d in dsts]
                    verified = all(c.ok for c in checks) and m.exit_status == 0
                    sess.ok = sess.ok and verified
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
                        "exit_status": m.exit_status,
                        "wall_s": round(m.wall_s, 3),
                        "cpu_s": round(m.cpu_s, 3),
                        "peak_rss_mb": round(m.peak_rss_mb, 1),
                        "source_get_bytes": m.source_get_bytes,
                        "source_gets": m.source_gets,
                        "read_per_written": round(m.source_get_bytes / written, 4),
                        "mb_per_s_written": round(written / m.wall_s / 1e6, 2),
                        "objects_per_s": round(ds.count * DESTINATIONS / m.wall_s, 1),
                        "verified": "; ".join(c.summary() for c in checks),
                        "commands": m.commands,
                    }
                    sess.records.append(rec)
                    log(
                        f"  W8 {ds.name:9s} run {run} {tool:6s} {m.wall_s:8.2f} s  "
                        f"read/written {rec['read_per_written']:.3f}  GETs {m.source_gets:,}  "
                        f"{rec['mb_per_s_written']:7.1f} MB/s  rss {m.peak_rss_mb:5.0f} MB  "
                        + ("ok" if verified else "FAILED: " + rec["verified"])
                    )
                    for d in dsts:
                        data.empty_bucket(ctx, d, remove=True)
    return finish("fanout", "W8: two destinations", args, sess, began, load_start, log, render_w8)


def render_w8(records: list[dict]) -> str:
    lines = [
        "Source bytes read per destination byte written come from RGW's access log (target "
        "for s3s3: 1/2 = 0.5). Times are to both destinations in step (rclone: its two runs "
        "added); MB/s over the bytes written to both. Medians over the runs, range in brackets.",
        "",
        "| set | tool | read / written | source GETs | wall s | MB/s written | obj/s written "
        "| CPU s | peak RSS MB | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        records,
        ("set", "tool"),
        (
            "read_per_written",
            "source_gets",
            "wall_s",
            "mb_per_s_written",
            "objects_per_s",
            "cpu_s",
            "peak_rss_mb",
        ),
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- W10

W10_LIMIT = "20M"
W10_LIMIT_BYTES = 20 * 1024**2


def bwlimit(args, *, run_dir: Path, log) -> int:
    from . import data
    from .workloads import bucket_name

    began, load_start = time.monotonic(), os.getloadavg()
    with session(args, run_dir=run_dir, log=log) as sess:
        ctx, sizes = sess.ctx, sess.ctx.sizes
        ds = data.make_large(ctx, "w10", sizes.w3_count, sizes.w3_bytes, keep_files=False)
        for run in range(ctx.runs):
            for tool in ("s3s3", "rclone"):
                dst = bucket_name("w10", tool, run)
                data.create_bucket(ctx, dst)
                work = run_dir / f"{tool}-{run}"
                limit = ("--bwlimit", W10_LIMIT)
                with sess.counted(ds.bucket) as m:
                    if tool == "s3s3":
                        sess.s3s3_bucket(m, work, ds.bucket, [dst], limit)
                    else:
                        sess.rclone_copy(m, work, ds.bucket, dst, limit)
                check = data.verify(ctx, ds, dst)
                verified = check.ok and m.exit_status == 0
                sess.ok = sess.ok and verified
                rate = ds.total_bytes / m.wall_s
                rec = {
                    "workload": "W10",
                    "tool": f"s3s3bucket --bwlimit {W10_LIMIT}"
                    if tool == "s3s3"
                    else f"rclone copy --bwlimit {W10_LIMIT}",
                    "run": run,
                    "ok": verified,
                    "exit_status": m.exit_status,
                    "bytes": ds.total_bytes,
                    "wall_s": round(m.wall_s, 3),
                    "cpu_s": round(m.cpu_s, 3),
                    "peak_rss_mb": round(m.peak_rss_mb, 1),
                    "source_get_bytes": m.source_get_bytes,
                    "mib_per_s": round(rate / 1024**2, 2),
                    "of_limit": round(rate / W10_LIMIT_BYTES, 3),
                    "verified": check.summary(),
                    "commands": m.commands,
                }
                sess.records.append(rec)
                log(
                    f"  W10 run {run} {tool:6s} {m.wall_s:8.2f} s  {rec['mib_per_s']:6.2f} MiB/s "
                    f"= {rec['of_limit']:.3f} of the limit  "
                    + ("ok" if verified else "FAILED: " + check.summary())
                )
                data.empty_bucket(ctx, dst, remove=True)
    title = f"W10: W3 under bwlimit = {W10_LIMIT}"
    return finish("bwlimit", title, args, sess, began, load_start, log, render_w10)


def render_w10(records: list[dict]) -> str:
    lines = [
        f"The rate is the bytes copied over the wall time of the whole run (start-up and "
        f"listing included), against the limit ({W10_LIMIT} = 20 MiB/s; target: within 10%).",
        "",
        "| tool | MiB/s | of the limit | wall s | CPU s | peak RSS MB | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        records, ("tool",), ("mib_per_s", "of_limit", "wall_s", "cpu_s", "peak_rss_mb")
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- W9

W9_PART = 64 * 1024**2
W9_KILL_AT = 0.6


def parts_put(server, start: int, end: int | None, bucket: str) -> int:
    """UploadPart requests RGW answered 200 for in ``bucket`` between two log offsets."""
    requests, _ = server.access_log.read(start, end)
    return sum(
        1
        for r in requests
        if r.method == "PUT" and r.bucket == bucket and "partNumber=" in r.query and r.status == 200
    )


def resume(args, *, run_dir: Path, log) -> int:
    """W9: kill -9 at about 60% of a 1 GiB multipart copy, then run again: what the second
    run reads from the source again, the parts it sends again, and its time."""
    import math
    import signal

    from . import data
    from .measure import TimedProcess
    from .workloads import bucket_name

    began, load_start = time.monotonic(), os.getloadavg()
    with session(args, run_dir=run_dir, log=log) as sess:
        ctx, sizes, server = sess.ctx, sess.ctx.sizes, sess.server
        size = sizes.w5_bytes
        ds = data.make_large(ctx, "w9", 1, size, keep_files=False)
        parts = math.ceil(size / W9_PART)
        kill_after = math.ceil(parts * W9_KILL_AT)
        client = server.client("src")
        for run in range(ctx.runs):
            for tool in ("s3s3", "rclone"):
                dst = bucket_name("w9", tool, run)
                data.create_bucket(ctx, dst)
                work = run_dir / f"{tool}-{run}"
                if tool == "s3s3":
                    invocation = sess.s3s3_bucket_argv(
                        work,
                        ds.bucket,
                        [dst],
                        dest_lines=(
                            f"multipart_threshold = {W9_PART}",
                            f"multipart_chunksize = {W9_PART}",
                            f"upload_state = {work / 'uploads'}",
                        ),
                    )
                else:
                    invocation = sess.rclone_argv(
                        work,
                        ds.bucket,
                        dst,
                        ("--s3-chunk-size", "64M", "--s3-upload-cutoff", "64M"),
                    )
                argv, env, cwd = invocation
                start = server.access_log.mark(client)
                first = TimedProcess(argv, log_path=cwd / "first.log", env=env, cwd=cwd)
                done_before = 0
                while first.running():
                    done_before = parts_put(server, start, None, dst)
                    if done_before >= kill_after:
                        first.stop(signal.SIGKILL, grace_s=10)
                        break
                    time.sleep(0.05)
                first.wait()
                killed_s = first.measurement().wall_s
                mid = server.access_log.mark(client)
                read_before, _ = source_get_bytes(server, start, mid, ds.bucket)
                with sess.counted(ds.bucket) as again:
                    sess.timed(again, invocation)
                end = server.access_log.mark(client)
                sent_again = parts_put(server, mid, end, dst)
                check = data.verify(ctx, ds, dst)
                killed = done_before >= kill_after
                verified = check.ok and again.exit_status == 0 and killed
                sess.ok = sess.ok and verified
                rec = {
                    "workload": "W9",
                    "tool": "s3s3bucket" if tool == "s3s3" else "rclone copy",
                    "run": run,
                    "ok": verified,
                    "bytes": size,
                    "parts": parts,
                    "parts_before_kill": done_before,
                    "killed_after_s": round(killed_s, 2),
                    "read_before_kill": read_before,
                    "read_again": again.source_get_bytes,
                    "read_again_parts": round(again.source_get_bytes / W9_PART, 2),
                    "parts_sent_again": sent_again,
                    "restart_wall_s": round(again.wall_s, 2),
                    "total_wall_s": round(killed_s + again.wall_s, 2),
                    "restart_cpu_s": round(again.cpu_s, 2),
                    "restart_peak_rss_mb": round(again.peak_rss_mb, 1),
                    "verified": check.summary() if killed else "never reached the kill point",
                    "commands": [" ".join(argv)],
                }
                sess.records.append(rec)
                log(
                    f"  W9 run {run} {tool:6s} killed at {done_before}/{parts} parts after "
                    f"{killed_s:.1f} s; the restart read {rec['read_again_parts']} parts again "
                    f"and sent {sent_again} parts in {again.wall_s:.1f} s  "
                    + ("ok" if verified else "FAILED: " + rec["verified"])
                )
                data.empty_bucket(ctx, dst, remove=True)
    title = "W9: kill -9 at 60% of a 1 GiB multipart copy, then run again"
    return finish("resume", title, args, sess, began, load_start, log, render_w9)


def render_w9(records: list[dict]) -> str:
    lines = [
        f"Parts of {W9_PART // 1024**2} MiB for both tools. The restart's source bytes come "
        "from RGW's access log (target for s3s3: less than two parts read again); "
        "parts sent again are UploadParts the restart made.",
        "",
        "| tool | parts done at the kill | read again (parts) | parts sent again | restart s "
        "| total s | restart CPU s | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        records,
        ("tool",),
        (
            "parts_before_kill",
            "read_again_parts",
            "parts_sent_again",
            "restart_wall_s",
            "total_wall_s",
            "restart_cpu_s",
        ),
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- A/B


def ab(args, *, run_dir: Path, log) -> int:
    """W2 and W3 copied by s3s3bucket from each of ``--checkouts`` in turn, round after
    round: a change to the data path measured against the code before it, same server,
    same session."""
    from . import data
    from .measure import tool_env
    from .workloads import bucket_name

    checkouts = [Path(c).resolve() for c in (args.checkouts or "").split(",") if c]
    if len(checkouts) < 2:
        log("ab: give --checkouts OLD,NEW (two or more repository checkouts)")
        return 2
    began, load_start = time.monotonic(), os.getloadavg()
    with session(args, run_dir=run_dir, log=log) as sess:
        ctx = sess.ctx
        sets = w2_and_w3(ctx, "ab-w2", "ab-w3")
        for run in range(ctx.runs):
            for ds in sets:
                for n, checkout in enumerate(checkouts):
                    dst = bucket_name("ab", ds.name, n, run)
                    data.create_bucket(ctx, dst)
                    work = run_dir / f"{ds.name}-{n}-{run}"
                    argv, _, cwd = sess.s3s3_bucket_argv(work, ds.bucket, [dst])
                    env = tool_env({"PYTHONPATH": str(checkout)})
                    m = Run()
                    sess.timed(m, (argv, env, cwd))
                    check = data.verify(ctx, ds, dst)
                    verified = check.ok and m.exit_status == 0
                    sess.ok = sess.ok and verified
                    rec = {
                        "workload": "W2" if ds.name == "ab-w2" else "W3",
                        "checkout": f"{checkout.name}@{_revision(checkout)}",
                        "run": run,
                        "ok": verified,
                        "wall_s": round(m.wall_s, 3),
                        "cpu_s": round(m.cpu_s, 3),
                        "peak_rss_mb": round(m.peak_rss_mb, 1),
                        "objects_per_s": round(ds.count / m.wall_s, 1),
                        "mb_per_s": round(ds.total_bytes / m.wall_s / 1e6, 2),
                        "verified": check.summary(),
                    }
                    sess.records.append(rec)
                    log(
                        f"  {rec['workload']} run {run} {rec['checkout']:28s} {m.wall_s:8.2f} s"
                        f"  cpu {m.cpu_s:6.2f} s  rss {m.peak_rss_mb:5.0f} MB  "
                        + ("ok" if verified else "FAILED: " + check.summary())
                    )
                    data.empty_bucket(ctx, dst, remove=True)
    title = "W2 and W3, s3s3bucket before and after"
    return finish("ab", title, args, sess, began, load_start, log, render_ab)


def _revision(checkout: Path) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "?"


def render_ab(records: list[dict]) -> str:
    lines = [
        "Each checkout's s3s3bucket copies the same source into a fresh bucket, in turns. "
        "Medians over the runs, range in brackets.",
        "",
        "| workload | checkout | wall s | obj/s | MB/s | CPU s | peak RSS MB | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += table_rows(
        records,
        ("workload", "checkout"),
        ("wall_s", "objects_per_s", "mb_per_s", "cpu_s", "peak_rss_mb"),
    )
    return "\n".join(lines) + "\n"
