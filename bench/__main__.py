"""``python -m bench``: the whole benchmark in one command (see bench/README.md).

    python -m bench                       # everything, 3 interleaved runs per tool (~25 min)
    python -m bench --quick               # small counts, 1 run: checks the harness (~4 min)
    python -m bench --workloads w1,w4 --runs 5
    python -m bench profile               # s3s3bucket on W2 under py-spy
    python -m bench options               # client CPU per small copy, per way of sending it
    python -m bench callgrind             # instructions per copied object, s3s3 vs rclone
    python -m bench fanout                # W8: two destinations, source bytes read per byte written
    python -m bench resume                # W9: kill -9 at 60% of a 1 GiB copy, then again
    python -m bench bwlimit               # W10: W3 under --bwlimit 20M, s3s3 and rclone
    python -m bench ab --checkouts OLD,NEW  # W2 and W3 by s3s3bucket from each checkout in turn
    python -m bench install               # only install the peers
    python -m bench report bench/results/DATE.json   # render a run's records again

Run it from the repository root with a Python 3.10+ that can import s3s3's dependencies
(boto3, redis), e.g. ``/work/venv313/bin/python -m bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .paths import RESULTS_DIR, WORK_DIR

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:15]),
    )
    p.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=(
            "run",
            "profile",
            "options",
            "callgrind",
            "fanout",
            "resume",
            "bwlimit",
            "ab",
            "listing",
            "install",
            "report",
        ),
    )
    p.add_argument(
        "results",
        nargs="?",
        type=Path,
        help="report: a results JSON to render again (markdown, plot, README)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small counts and one run: proves the harness, measures nothing",
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of " + ",".join(WORKLOADS),
    )
    p.add_argument(
        "--runs", type=int, help="runs per tool (default 3; 1 with --quick and for callgrind)"
    )
    p.add_argument(
        "--moto",
        action="store_true",
        help="use the moto fallback even if Ceph could start (marked in the output)",
    )
    p.add_argument(
        "--s3s3-bucket-cmd",
        metavar="CMD",
        help="command for s3s3bucket, with {python} and {config}; default: "
        "'{python} -m s3s3.scripts.bucket --config {config}'",
    )
    p.add_argument(
        "--s3s3-listen-cmd",
        metavar="CMD",
        help="command for s3s3listen, with {python} and {config}",
    )
    p.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the latest-results section of bench/README.md "
        "(default: yes for a full run, no with --quick)",
    )
    p.add_argument(
        "--keep-server",
        action="store_true",
        help="leave the RGW running at the end (bench/work/ceph/endpoint.json)",
    )
    p.add_argument(
        "--objects",
        type=int,
        help="profile, options, callgrind: objects to copy "
        "(default W2's; 3,000 for options; W1's 1,000 for callgrind)",
    )
    p.add_argument(
        "--tools",
        help="callgrind: comma-separated subset of s3s3,rclone (default both)",
    )
    p.add_argument(
        "--checkouts",
        help="ab: comma-separated repository checkouts whose s3s3bucket copies W2 and W3 in turn",
    )
    p.add_argument("--keys", type=int, help="listing: keys in the bucket (default 100,000)")
    p.add_argument(
        "--changed", type=int, default=100, help="listing: keys missing at the destination"
    )
    p.add_argument(
        "--delay", type=float, default=0.02, help="listing: seconds the proxies hold a request"
    )
    p.add_argument(
        "--list-concurrency",
        default="8,16",
        help="listing: the parallel s3s3's settings, comma-separated (a tool each)",
    )
    p.add_argument("--w6-keys", type=int, help="listing: keys of W6 with parallel listing")
    p.add_argument("--rate", type=int, default=200, help="profile: py-spy samples per second")
    p.add_argument(
        "--gil",
        action="store_true",
        help="profile: sample only the thread holding the GIL (Python code)",
    )
    p.add_argument(
        "--native", action="store_true", help="profile: include C frames (py-spy --native)"
    )
    return p


class Tee:
    """Print to the terminal and to the run's log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", buffering=1)

    def __call__(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        print(line, flush=True)
        self.file.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .servers import repo_on_path

    repo_on_path()
    workloads = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        print(
            f"unknown workloads: {', '.join(unknown)} (known: {', '.join(WORKLOADS)})",
            file=sys.stderr,
        )
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = WORK_DIR / "runs" / f"{stamp}-{args.command}"
    log = Tee(run_dir / "bench.log")
    if args.command == "install":
        _install(None, log)
        return 0
    if args.command == "report":
        return rerender(args, log)
    if args.command == "profile":
        from .profile import profile

        return profile(args, run_dir=run_dir, log=log)
    if args.command == "options":
        from .options import options

        return options(args, run_dir=run_dir, log=log)
    if args.command in ("fanout", "resume", "bwlimit", "ab"):
        from . import datapath

        return getattr(datapath, args.command)(args, run_dir=run_dir, log=log)
    if args.command == "listing":
        from .listing import w11

        return w11(args, run_dir=run_dir, log=log)
    if args.command == "callgrind":
        from .callgrind import callgrind

        return callgrind(args, run_dir=run_dir, log=log)
    return run(args, workloads, run_dir=run_dir, log=log, argv=argv)


def rerender(args, log) -> int:
    """Markdown, plot and (with --readme) the README section again, from a results JSON."""
    import json

    from . import report
    from .install import TOOLS_VENV

    if not args.results or not args.results.exists():
        log("report: give the results JSON to render, e.g. bench/results/DATE.json")
        return 2
    doc = json.loads(args.results.read_text())
    stem = args.results.stem
    md = report.write_results(args.results.parent, doc["meta"], doc["records"], stem=stem)
    _plot(TOOLS_VENV / "bin" / "python", args.results, args.results.with_suffix(".png"), log)
    if args.readme and report.update_readme(md.read_text(), results_link=md.name):
        log("bench/README.md updated")
    print(md.read_text())
    return 0


def _plot(python: Path, json_path: Path, png: Path, log) -> bool:
    if not python.exists():
        log("no tools venv: no plot (python -m bench install)")
        return False
    result = subprocess.run(
        [str(python), "-m", "bench.plot", str(json_path), str(png)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    if result.returncode != 0:
        log(f"plot failed: {result.stderr[-500:]}")
    return png.exists()


def _install(ctx, log) -> dict:
    from . import install
    from .measure import require_time_bin

    require_time_bin()
    found = {"tools": install.ensure_tools(log=log)}
    if ctx is not None:
        from .peers import rclone, s3s3_2015

        ctx.tools_bin = found["tools"]
        rclone.ensure(ctx)
        s3s3_2015.ensure(ctx)
    else:
        install.ensure_debian("rclone", "rclone", log=log)
        from .peers.s3s3_2015 import PACKAGE, VENV, find_python

        python = find_python()
        if python:
            install.ensure_venv(VENV, python, (PACKAGE,), log=log)
    log("installed: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    return found


def run(args, workloads: list[str], *, run_dir: Path, log, argv) -> int:
    from . import data, listener
    from . import workloads as wl
    from .context import Context, Sizes
    from .peers import COPIERS, W2_COPIERS, s5cmd
    from .peers import s3s3 as s3s3_peer
    from .servers import start_server

    began = time.monotonic()
    sizes = Sizes.quick() if args.quick else Sizes()
    runs = args.runs or (1 if args.quick else 3)
    command = "python -m bench" + (
        ""
        if argv is None and len(sys.argv) <= 1
        else " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    )
    log(f"s3s3 benchmark: workloads {','.join(workloads)}, {runs} runs; logs in {run_dir}")
    load_at_start = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    load = os.getloadavg()[0]
    if load > 1.5:
        log(
            f"!!! load average {load:.1f} on {os.cpu_count()} cores: other work is running "
            f"and the figures will be noisy; run again when the machine is quiet"
        )
    server = start_server(force_moto=args.moto, log=log)
    ctx = Context(
        server=server,
        run_dir=run_dir,
        sizes=sizes,
        runs=runs,
        log=log,
        s3s3_bucket_cmd=args.s3s3_bucket_cmd,
        s3s3_listen_cmd=args.s3s3_listen_cmd,
    )
    ctx.notes.extend(server.notes)
    try:
        _install(ctx, log)
        ctx.versions = {
            "server": server.version,
            "Python": sys.version.split()[0],
            "s3s3/boto3/botocore": s3s3_peer.version(ctx),
            **ctx.versions,
        }
        if ctx.s5cmd:
            ctx.versions["s5cmd"] = s5cmd.version(ctx)
        for why in filter(None, (s3s3_peer.bucket_unavailable(ctx),)):
            ctx.note(f"!!! s3s3bucket cannot run: {why}")
        ds = {}
        if "w1" in workloads:
            ds["w1"] = data.make_small(ctx, "w1", sizes.w1_count, sizes.small_bytes)
        if "w2" in workloads or "w4" in workloads:
            ds["w2"] = data.make_small(ctx, "w2", sizes.w2_count, sizes.small_bytes)
        if "w3" in workloads:
            ds["w3"] = data.make_large(ctx, "w3", sizes.w3_count, sizes.w3_bytes, keep_files=True)
        if "w5" in workloads:
            ds["w5"] = data.make_large(ctx, "w5", 1, sizes.w5_bytes, keep_files=False)
        log(f"data sets ready after {time.monotonic() - began:.0f} s")
        complete: dict[str, str] = {}
        if "w1" in workloads:
            wl.copy_workload(ctx, ds["w1"], "W1", COPIERS, ceiling=True, keep=True)
        if "w2" in workloads:
            complete = wl.copy_workload(ctx, ds["w2"], "W2", W2_COPIERS, ceiling=True, keep=True)
        if "w4" in workloads:
            wl.noop_workload(ctx, ds["w2"], complete)
        if "w3" in workloads:
            wl.copy_workload(ctx, ds["w3"], "W3", COPIERS, ceiling=True, keep=False)
        if "w5" in workloads:
            wl.copy_workload(ctx, ds["w5"], "W5", wl.W5_COPIERS, ceiling=False, keep=False)
        if "w6" in workloads:
            wl.planner_workload(ctx)
        if "w7" in workloads:
            listener.listener_workload(ctx)
    except KeyboardInterrupt:
        ctx.note("interrupted: the results are partial")
    finally:
        data.clear_local()
        _clean_redis(ctx)
        if args.keep_server:
            log(f"server left running: {server.workdirs[0]}/endpoint.json")
        else:
            server.stop()
    return _publish(
        args, ctx, command=command, began=began, stamp_dir=run_dir, load_at_start=load_at_start
    )


def _clean_redis(ctx) -> None:
    """Delete the ``backup=>KEY`` markers the 2015 s3s3 set for our keys in the shared Redis."""
    import redis

    from .data import KEY_ROOT
    from .peers.s3s3_2015 import delete_markers

    try:
        n = delete_markers(redis.Redis.from_url(ctx.redis_url), KEY_ROOT + "/")
    except redis.RedisError as exc:
        ctx.log(f"could not delete the 2015 s3s3's marker keys: {exc}")
        return
    if n:
        ctx.log(f"deleted {n} marker keys the 2015 s3s3 set in Redis (backup=>{KEY_ROOT}/...)")


def _publish(args, ctx, *, command: str, began: float, stamp_dir: Path, load_at_start: str) -> int:
    from . import report

    if not ctx.records:
        ctx.log("no records: nothing to publish")
        return 1
    date = time.strftime("%Y-%m-%d")
    stem = date + ("-fallback" if ctx.server.fallback else "") + ("-quick" if args.quick else "")
    meta = {
        "date": date,
        "started": stamp_dir.name,
        "command": command,
        "runs": ctx.runs,
        "quick": args.quick,
        "fallback": ctx.server.fallback,
        "server": ctx.server.version,
        "machine": report.machine(),
        "versions": ctx.versions,
        "s3s3_revision": report.git_revision(),
        "notes": ctx.notes,
        "sizes": dataclasses.asdict(ctx.sizes),
        "duration_min": round((time.monotonic() - began) / 60, 1),
        "load_at_start": load_at_start,
        "load_at_end": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }
    meta["versions"]["s3s3 revision"] = meta["s3s3_revision"]
    png = RESULTS_DIR / f"{stem}.png"
    meta["plot_name"] = png.name
    md = report.write_results(RESULTS_DIR, meta, ctx.records, stem=stem)
    png.unlink(missing_ok=True)
    if ctx.tools_bin is None or not _plot(
        ctx.tools_bin / "python", RESULTS_DIR / f"{stem}.json", png, ctx.log
    ):
        meta["plot_name"] = None
        md = report.write_results(RESULTS_DIR, meta, ctx.records, stem=stem)
    update = args.readme if args.readme is not None else not args.quick and not ctx.server.fallback
    if update and report.update_readme(md.read_text(), results_link=md.name):
        ctx.log("bench/README.md updated")
    failed = [r for r in ctx.records if not r["ok"]]
    ctx.log(
        f"results: {md} ({len(ctx.records)} runs, {len(failed)} failed) in "
        f"{(time.monotonic() - began) / 60:.1f} min"
    )
    print("\n" + md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
