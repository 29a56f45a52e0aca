"""W1-W6: whole-bucket copies, the server's ceiling, the no-op re-run and the planner.

- W1, W2: 1,000 and 10,000 objects of 4 KiB into an empty destination (objects/s);
- W3: 4 objects of 256 MiB (MB/s, peak RSS);
- W5: 1 object of 1 GiB (peak RSS above all);
- W4: a re-run when the destination is already complete: 10,000 objects (seconds, requests);
- W6: s3s3's planner over generated listings of 1,000,000 keys (peak RSS), in a fresh
  process (:mod:`bench.planprobe`), since uploading a million objects would take too long.

Every round runs each tool once, in the same order (A B C A B C): noise from the machine
falls on all of them alike. Each run gets a new, empty destination bucket. The server's
ceiling (s5cmd raw PUT and GET) is measured in the same rounds. Every run is verified
afterwards (:func:`bench.data.verify`); its requests are counted from RGW's access log.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from . import data
from .context import Context
from .data import Dataset
from .measure import Measurement, run_timed
from .paths import SHM_DIR
from .peers import COPIERS, NOOP, PLAIN_BOTO3, RCLONE, S3S3, Copier, CopyJob, s5cmd
from .servers import count_requests

#: Which copiers run which workload.
W5_COPIERS = (S3S3, RCLONE, PLAIN_BOTO3)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def bucket_name(*parts: object) -> str:
    """A valid bucket name (3-63 characters of a-z, 0-9 and '-')."""
    return slug("-".join(map(str, parts)))[:63].strip("-")


class Window:
    """The server side of one run: its CPU and the requests RGW logged meanwhile."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = ctx.server.access_log
        self.client = ctx.server.client("src") if self.log else None
        self.start = self.log.mark(self.client) if self.log else 0
        self.cpu0 = ctx.server.cpu_s()

    def close(self) -> tuple[float, dict[str, int] | None]:
        cpu = self.ctx.server.cpu_s() - self.cpu0
        if not self.log:
            return cpu, None
        end = self.log.mark(self.client)
        requests, _ = self.log.read(self.start, end)
        return cpu, count_requests(requests)


def measure_run(
    ctx: Context,
    *,
    workload: str,
    tool: str,
    family: str,
    run: int,
    argv: list[str],
    env: dict,
    cwd: Path,
    objects: int,
    nbytes: int,
    verify: Callable[[], data.Verification] | None,
    **extra,
) -> dict:
    """Time one invocation, count its requests, verify its result, and record it."""
    window = Window(ctx)
    m = run_timed(argv, log_path=cwd / "output.log", env=env, cwd=cwd)
    server_cpu, requests = window.close()
    check = verify() if verify and m.exit_status == 0 else None
    ok = m.exit_status == 0 and (check is None or check.ok)
    rec = ctx.record(
        workload=workload,
        tool=tool,
        family=family,
        run=run,
        ok=ok,
        exit_status=m.exit_status,
        wall_s=round(m.wall_s, 4),
        user_s=m.user_s,
        sys_s=m.sys_s,
        cpu_s=m.cpu_s,
        peak_rss_mb=round(m.peak_rss_mb, 1) if m.peak_rss_mb else None,
        objects=objects,
        bytes=nbytes,
        server_cpu_s=round(server_cpu, 3),
        requests=requests,
        verified=check.summary() if check else ("not verified" if verify else "n/a"),
        log=m.log_path,
        command=" ".join(argv),
        notes=m.notes,
        **extra,
    )
    _say(ctx, rec)
    return rec


def _say(ctx: Context, rec: dict) -> None:
    rate = ""
    if rec["wall_s"] and rec["workload"] not in ("W4", "W6"):
        if rec["bytes"] >= 50 * 1024**2:
            rate = f"{rec['bytes'] / rec['wall_s'] / 1e6:7.1f} MB/s"
        elif rec["objects"]:
            rate = f"{rec['objects'] / rec['wall_s']:7.1f} obj/s"
    req = rec["requests"]["total"] if rec.get("requests") else "-"
    ctx.log(
        f"  {rec['workload']} run {rec['run']} {rec['tool']:<38} {rec['wall_s']:8.2f} s "
        f"{rate:>14}  cpu {rec['cpu_s'] or 0:6.2f} s  rss {rec['peak_rss_mb'] or 0:6.0f} MB"
        f"  req {req}  {'ok' if rec['ok'] else 'FAILED: ' + str(rec['verified'])}"
        f"{'' if rec['exit_status'] == 0 else ' exit ' + str(rec['exit_status'])}"
    )


# --------------------------------------------------------------------------- copies


def copy_run(
    ctx: Context, copier: Copier, ds: Dataset, workload: str, run: int, *, keep: bool = True
) -> dict | None:
    """One copier, one run, into a fresh bucket; None when the copier cannot run here."""
    why = copier.available(ctx)
    if why:
        ctx.note(f"{copier.name}: skipped ({why})")
        return None
    dst = bucket_name("d", workload, copier.name, run)
    data.create_bucket(ctx, dst)
    work = ctx.run_dir / workload / f"{slug(copier.name)}-{run}"
    work.mkdir(parents=True, exist_ok=True)
    inv = copier.build(ctx, CopyJob(ds.bucket, dst, work))
    keys = None
    objects, nbytes = ds.count, ds.total_bytes
    extra = {}
    if copier.max_keys and copier.max_keys < ds.count:
        keys = ds.first_keys(copier.max_keys)
        objects = len(keys)
        nbytes = sum(ds.objects[k][0] for k in keys)
        extra["partial"] = f"copies only {copier.max_keys:,} of {ds.count:,} keys"
    rec = measure_run(
        ctx,
        workload=workload,
        tool=copier.name,
        family=copier.family,
        run=run,
        argv=inv.argv,
        env=inv.env,
        cwd=inv.cwd,
        objects=objects,
        nbytes=nbytes,
        verify=lambda: data.verify(ctx, ds, dst, keys=keys),
        dst_bucket=dst,
        **extra,
    )
    if not keep:
        data.empty_bucket(ctx, dst, remove=True)
    return rec


def ceiling_runs(ctx: Context, ds: Dataset, workload: str, run: int) -> None:
    """s5cmd: raw PUT of the data set's local files, and GET of the source to tmpfs."""
    if not ctx.s5cmd:
        ctx.note("s5cmd is not installed: no server ceiling")
        return
    if ds.local_dir is None or not ds.local_dir.exists():
        return
    work = ctx.run_dir / workload / f"s5cmd-{run}"
    work.mkdir(parents=True, exist_ok=True)
    dst = bucket_name("c", workload, run)
    data.create_bucket(ctx, dst)
    argv, env = s5cmd.put(ctx, ds.local_dir, dst, ds.prefix)
    measure_run(
        ctx,
        workload=workload,
        tool="ceiling: s5cmd PUT",
        family="ceiling-put",
        run=run,
        argv=argv,
        env=env,
        cwd=work,
        objects=ds.count,
        nbytes=ds.total_bytes,
        verify=lambda: data.verify(ctx, ds, dst) if ds.total_bytes < 2**30 else None,
    )
    data.empty_bucket(ctx, dst, remove=True)
    out = SHM_DIR / f"get-{workload}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    argv, env = s5cmd.get(ctx, ds.bucket, ds.prefix, out)
    (work / "get").mkdir(exist_ok=True)
    measure_run(
        ctx,
        workload=workload,
        tool="ceiling: s5cmd GET",
        family="ceiling-get",
        run=run,
        argv=argv,
        env=env,
        cwd=work / "get",
        objects=ds.count,
        nbytes=ds.total_bytes,
        verify=lambda: _verify_local(ds, out),
    )
    shutil.rmtree(out, ignore_errors=True)


def _verify_local(ds: Dataset, directory: Path) -> data.Verification:
    import hashlib

    problems = []
    for key, (size, md5) in ds.objects.items():
        path = directory / key.rsplit("/", 1)[1]
        if not path.exists() or path.stat().st_size != size:
            problems.append(f"missing or short {path.name}")
        elif size >= data.HASH_OVER_BYTES and hashlib.md5(path.read_bytes()).hexdigest() != md5:
            problems.append(f"{path.name}: md5 differs")
    return data.Verification(ok=not problems, checked=ds.count, problems=problems)


def copy_workload(
    ctx: Context,
    ds: Dataset,
    workload: str,
    copiers: tuple[Copier, ...],
    *,
    ceiling: bool,
    keep: bool,
) -> dict[str, str]:
    """``ctx.runs`` rounds over ``copiers`` (and the ceiling); the last verified destination
    of each copier, by name."""
    ctx.log(
        f"== {workload}: {ds.count:,} objects, {ds.total_bytes / 1e6:,.1f} MB, {ctx.runs} rounds"
    )
    last_dst: dict[str, str] = {}
    for run in range(ctx.runs):
        for copier in copiers:
            rec = copy_run(ctx, copier, ds, workload, run, keep=keep)
            if rec and rec["ok"] and keep:
                last_dst[copier.name] = rec["dst_bucket"]
        if ceiling:
            ceiling_runs(ctx, ds, workload, run)
    return last_dst


# --------------------------------------------------------------------------- W4


def noop_workload(ctx: Context, ds: Dataset, complete: dict[str, str]) -> None:
    """Each tool re-runs over a destination it completed itself (W2's last run when there
    was one); nothing should be copied. rclone's variants share rclone's destination."""
    ctx.log(f"== W4: no-op re-run over {ds.count:,} objects, {ctx.runs} rounds")
    targets: dict[str, str] = {}
    for copier in NOOP:
        if copier.available(ctx):
            ctx.note(f"{copier.name}: skipped in W4 ({copier.available(ctx)})")
            continue
        maker = next((c for c in COPIERS if c.family == copier.family), copier)
        dst = complete.get(maker.name)
        if dst is None:
            ctx.log(f"  preparing a complete destination with {maker.name}")
            rec = copy_run(ctx, maker, ds, "W4-prepare", 0)
            if not rec or not rec["ok"]:
                ctx.note(f"{copier.name}: W4 skipped, its destination could not be prepared")
                continue
            dst = complete[maker.name] = rec["dst_bucket"]
        targets[copier.name] = dst
    for run in range(ctx.runs):
        for copier in NOOP:
            dst = targets.get(copier.name)
            if dst is None:
                continue
            work = ctx.run_dir / "W4" / f"{slug(copier.name)}-{run}"
            work.mkdir(parents=True, exist_ok=True)
            inv = copier.build(ctx, CopyJob(ds.bucket, dst, work))
            seen = ds.count if not copier.max_keys else min(ds.count, copier.max_keys)
            keys = ds.first_keys(seen) if seen < ds.count else None
            extra = {"partial": f"looks at the first {seen:,} keys only"} if keys else {}
            measure_run(
                ctx,
                workload="W4",
                tool=copier.name,
                family=copier.family,
                run=run,
                argv=inv.argv,
                env=inv.env,
                cwd=inv.cwd,
                objects=seen,
                nbytes=0,
                verify=lambda d=dst, k=keys: data.verify(ctx, ds, d, keys=k),
                dst_bucket=dst,
                **extra,
            )


# --------------------------------------------------------------------------- W6


def planner_workload(ctx: Context) -> None:
    """s3s3's planner over generated sorted listings, in a fresh process per run."""
    n = ctx.sizes.w6_keys
    ctx.log(f"== W6: planning {n:,} keys (generated listings, no server), {ctx.runs} runs")
    from .peers.s3s3 import _env

    for run in range(ctx.runs):
        work = ctx.run_dir / "W6" / f"plan-{run}"
        work.mkdir(parents=True, exist_ok=True)
        argv = [ctx.python, "-m", "bench.planprobe", "--keys", str(n)]
        env = _env()  # PYTHONPATH: the repository, which holds both s3s3 and bench
        m: Measurement = run_timed(argv, log_path=work / "output.log", env=env, cwd=work)
        result = _last_json(work / "output.log")
        rec = ctx.record(
            workload="W6",
            tool="s3s3 planner",
            family="s3s3",
            run=run,
            ok=m.exit_status == 0 and bool(result),
            exit_status=m.exit_status,
            wall_s=round(m.wall_s, 3),
            user_s=m.user_s,
            sys_s=m.sys_s,
            cpu_s=m.cpu_s,
            peak_rss_mb=round(m.peak_rss_mb, 1) if m.peak_rss_mb else None,
            objects=n,
            bytes=0,
            requests=None,
            server_cpu_s=None,
            verified="n/a",
            probe=result,
            command=" ".join(argv),
            log=m.log_path,
            notes=m.notes,
        )
        _say(ctx, rec)


def _last_json(path: Path) -> dict | None:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None
