"""``python -m bench callgrind``: instructions per copied object, s3s3bucket against rclone.

Wall and CPU time swing by a third between rounds on the shared two-core machine; the
number of instructions a process executes does not. Each tool copies W1 (``--objects``,
default 1,000 x 4 KiB) into a fresh, empty destination bucket under
``valgrind --tool=callgrind --trace-children=no``, and the total instruction count (Ir, the
``totals:`` line of the callgrind output) is divided by the objects copied. The same tool
copying an empty source bucket into an empty destination gives its fixed start-up cost
(interpreter or runtime start, imports, configuration, two empty listings), so the report
shows Ir per object both with and without it; the latter is the data-path figure.

What the counts are: every instruction of every thread of the tool's process (valgrind
runs the threads one at a time on one core, so the process is ~50x slower and its threads
never run in parallel; the count does not depend on that). What they are not: the server's
work (RGW, OSD) runs in other processes and is not counted, nor the kernel's.

rclone runs as the bench runs it (``rclone copy`` with defaults, two remotes) with
``GODEBUG=asyncpreemptoff=1``: without it callgrind aborts on the Go runtime's preemption
signals. s3s3 runs as ``python -m s3s3.scripts.bucket --config FILE`` (or
``--s3s3-bucket-cmd``). Every copy is verified (every key, size and md5 ETag), every empty
run must leave its destination empty.

The callgrind output is also read function by function (:func:`read_profile`, self cost
per object file and function), so the report can say where s3s3's instructions go at the
C level: the interpreter, OpenSSL's libcrypto (md5, SHA-256, HMAC), expat, zlib, libc, and
for rclone per Go package. Writes ``bench/results/DATE-callgrind.md`` and ``.json`` and the
marked callgrind section of bench/README.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .paths import README, RESULTS_DIR

README_BEGIN = "<!-- bench:callgrind:begin -->"
README_END = "<!-- bench:callgrind:end -->"
TOOLS = ("s3s3", "rclone")
#: The issue's target: s3s3 at most half of rclone's instructions per object.
TARGET_RATIO = 0.5
#: One callgrind run at most (the slowest, s3s3 over 1,000 objects, takes ~40 s).
TIMEOUT_S = 1800.0
VALGRIND = "valgrind"

#: (category, regex on the object file's path) for the C-level breakdown; first match wins.
OBJECT_CATEGORIES = [
    ("interpreter (libpython)", r"libpython3|/bin/python3"),
    ("OpenSSL libcrypto (md5, SHA-256, HMAC, TLS crypto)", r"libcrypto\.so"),
    ("OpenSSL libssl", r"libssl\.so"),
    ("_hashlib / _ssl glue", r"_hashlib\.|_ssl\."),
    ("XML: pyexpat, libexpat, _elementtree", r"pyexpat|libexpat|_elementtree"),
    ("zlib", r"libz\.so|zlib\."),
    ("libc (memcpy, malloc, system-call wrappers)", r"/libc\.so|/libm\.so|libpthread"),
    ("dynamic loader (ld.so; __tls_get_addr: libpython's thread-locals)", r"ld-linux"),
    ("valgrind's preload shims", r"vgpreload"),
    ("other C extension modules", r"lib-dynload/|site-packages/.*\.so"),
]

#: For the interpreter's own share: (category, regex on the C function name); first match
#: wins, so object lifetimes are told apart from the collector and calls from attributes.
INTERPRETER_CATEGORIES = [
    (
        "start-up: compiling, unmarshalling, making types",
        r"_PyPegen|^r_object|marshal|^compiler_|_PyAST|symtable|update_one_slot|type_new|"
        r"PyType_Ready|^fixup_slot|^add_operators|_PyCode_",
    ),
    ("bytecode evaluation loop", r"^_PyEval_EvalFrameDefault$|^_PyEval_Vector$|^PyEval_"),
    (
        "calls, frames, arguments",
        r"[Vv]ectorcall|_PyObject_Call|MakeTpCall|_PyFunction|[Ff]rame|_PyArg_|"
        r"CheckFunctionResult|PyCMethod_New|^method_|GetMethod",
    ),
    (
        "object allocation and deallocation (pymalloc)",
        r"alloc|[Ff]ree$|_Free|_Malloc|_Py_Dealloc|_PyMem_|NewReference|GC_New|GC_Del|"
        r"GC_Link|GC_UnTrack|GC_Track",
    ),
    (
        "garbage collector",
        r"^gc_|_PyGC_|visit_|collect|subtract_refs|move_unreachable|update_refs|deduce_unreach",
    ),
    (
        "dicts, hashing, attribute and type lookup",
        r"dict|[Ll]ookup|GetAttr|SetAttr|getattr|IsSubtype|find_name_in_mro|siphash|hash",
    ),
    (
        "str / bytes: build, split, join, case, encode",
        r"unicode|Unicode|bytes|Bytes|format|ascii|split|lower|upper|[Jj]oin|[Ee]ncode|"
        r"[Dd]ecode|FromUCS|strip",
    ),
    ("regular expressions (_sre)", r"sre_|SRE|_sre"),
    ("lists, tuples, ints, comparisons", r"list_|List|tuple|Tuple|long_|Long|RichCompare"),
    (
        "thread state, locks and the GIL",
        r"[Mm]utex|ParkingLot|take_gil|drop_gil|PyThread|ThreadState|[Ll]ock|sem_|tss|tstate",
    ),
]


@dataclass
class Profile:
    """One callgrind output: the process's total Ir and its self cost per (object, function)."""

    total_ir: int
    self_ir: Counter = field(default_factory=Counter)  # (object file, function) -> Ir

    def by_object(self) -> Counter:
        out: Counter = Counter()
        for (ob, _), n in self.self_ir.items():
            out[ob] += n
        return out


_NAME = re.compile(r"^(ob|fl|fi|fe|fn|cob|cfl|cfi|cfn)=(?:\((\d+)\))?\s*(.*)$")
_RECURSION = re.compile(r"'\d+$")
_TABLE = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn"}  # the rest share the file table


def read_profile(path: Path) -> Profile:
    """Parse a callgrind output file (format version 1, events ``Ir``).

    Cost lines after an ``fn=`` line are that function's own (self) cost; the cost line that
    follows a ``calls=`` line is the inclusive cost of the call and is skipped. Names are
    compressed (``(12) name`` the first time, ``(12)`` after), in one table per kind.
    """
    names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}, "fl": {}}
    ob = fn = "???"
    total: int | None = None
    self_ir: Counter = Counter()
    skip_next = False
    with open(path, errors="replace") as f:
        for line in f:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    self_ir[(ob, fn)] += int(parts[1])
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            if line.startswith(("totals:", "summary:")):
                value = int(line.split()[1])
                total = value if line.startswith("totals:") or total is None else total
                continue
            m = _NAME.match(line.rstrip("\n"))
            if not m:
                continue
            kind, ident, name = m.groups()
            table = names[_TABLE.get(kind, "fl")]
            if ident is not None:
                if name:
                    table[ident] = name
                else:
                    name = table.get(ident, "???")
            if kind in ("fn", "cfn"):
                name = _RECURSION.sub("", name)  # fn'2: a recursion level, the same function
            if kind == "ob":
                ob = name
            elif kind == "fn":
                fn = name
    if total is None:
        raise ValueError(f"{path}: no 'totals:' or 'summary:' line (did callgrind finish?)")
    return Profile(total_ir=total, self_ir=self_ir)


def object_category(ob: str) -> str:
    for name, pattern in OBJECT_CATEGORIES:
        if re.search(pattern, ob):
            return name
    return "other: " + os.path.basename(ob) if ob != "???" else "unknown object (JIT/stubs)"


def interpreter_category(fn: str) -> str:
    for name, pattern in INTERPRETER_CATEGORIES:
        if re.search(pattern, fn):
            return name
    return "other interpreter functions"


def go_package(fn: str) -> str:
    """``net/http.(*Transport).roundTrip`` -> ``net/http``; ``runtime.mallocgc`` -> ``runtime``."""
    head, slash, tail = fn.rpartition("/")
    return head + slash + tail.split(".", 1)[0] if "." in tail else fn


def breakdown(full: Profile, empty: Profile | None, objects: int, key) -> list[tuple]:
    """Rows (group, share of the full run, Ir/object incl. start-up, Ir/object without)."""
    groups: Counter = Counter()
    base: Counter = Counter()
    for (ob, fn), n in full.self_ir.items():
        groups[key(ob, fn)] += n
    if empty is not None:
        for (ob, fn), n in empty.self_ir.items():
            base[key(ob, fn)] += n
    total = sum(groups.values()) or 1
    rows = []
    # Largest data-path cost first (what a data-path change can move), else the full run's.
    order = sorted(groups, key=lambda g: -(groups[g] - base[g]) if empty else -groups[g])
    for group in order:
        n = groups[group]
        rows.append(
            (
                group,
                n / total,
                n / objects,
                (n - base[group]) / objects if empty is not None else None,
            )
        )
    return rows


# --------------------------------------------------------------------------- running


def valgrind_argv(argv: list[str], out_file: Path) -> list[str]:
    return [
        VALGRIND,
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        "--trace-children=no",
        *argv,
    ]


def run_one(ctx, copier, *, src_bucket: str, dst_bucket: str, work: Path, go: bool) -> dict:
    """One callgrind run of ``copier`` from ``src_bucket`` into ``dst_bucket``."""
    from .peers import CopyJob

    work.mkdir(parents=True, exist_ok=True)
    inv = copier.build(ctx, CopyJob(src_bucket, dst_bucket, work))
    env = dict(inv.env)
    if go:
        env["GODEBUG"] = "asyncpreemptoff=1"
    out_file = work / "callgrind.out"
    out_file.unlink(missing_ok=True)
    argv = valgrind_argv(inv.argv, out_file)
    log_path = work / "output.log"
    began = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=inv.cwd,
                timeout=TIMEOUT_S,
            )
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = -9
    wall = time.monotonic() - began
    profile = None
    problem = None
    if status != 0:
        problem = f"exit {status}; see {log_path}"
    elif not out_file.exists():
        problem = f"no callgrind output; see {log_path}"
    else:
        try:
            profile = read_profile(out_file)
        except ValueError as exc:
            problem = str(exc)
    return {
        "status": status,
        "wall_s": round(wall, 1),
        "profile": profile,
        "problem": problem,
        "out_file": str(out_file),
        "log": str(log_path),
        "command": " ".join(shlex.quote(a) for a in argv),
        "env": "GODEBUG=asyncpreemptoff=1" if go else "",
    }


def _check_empty(ctx, bucket: str) -> tuple[bool, str]:
    client = ctx.server.client("dst")
    n = sum(
        len(page.get("Contents", ()))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    )
    return n == 0, f"{n} objects (expected 0)"


def callgrind(args, *, run_dir: Path, log) -> int:
    from . import data
    from .context import Context, Sizes
    from .peers import RCLONE, S3S3, rclone
    from .peers import s3s3 as s3s3_peer
    from .report import git_revision, machine
    from .servers import start_server
    from .workloads import bucket_name

    tools = [t.strip().lower() for t in (args.tools or ",".join(TOOLS)).split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or not tools:
        log(f"--tools: unknown {', '.join(unknown) or '(none)'} (known: {', '.join(TOOLS)})")
        return 2
    sizes = Sizes.quick() if args.quick else Sizes()
    objects = args.objects or sizes.w1_count
    runs = args.runs or 1
    began = time.monotonic()
    if subprocess.run([VALGRIND, "--version"], capture_output=True).returncode != 0:
        log("valgrind is missing: apt-get install -y valgrind")
        return 1
    valgrind_version = subprocess.run(
        [VALGRIND, "--version"], capture_output=True, text=True
    ).stdout.strip()
    # ~100 M instructions per second under callgrind here; s3s3 ~2 M and rclone ~2.5 M per
    # object, start-ups of ~2 G and ~0.5 G run twice each: say how long it will take.
    estimate_min = runs * (objects * 4.5e6 + 5e9) / 100e6 / 60
    log(
        f"callgrind: {objects:,} objects x {runs} run(s), tools {','.join(tools)}; "
        f"~{estimate_min:.0f} min; logs in {run_dir}"
    )
    server = start_server(force_moto=args.moto, log=log)
    ctx = Context(
        server=server,
        run_dir=run_dir,
        sizes=sizes,
        runs=runs,
        log=log,
        s3s3_bucket_cmd=args.s3s3_bucket_cmd,
    )
    copiers = {"s3s3": S3S3, "rclone": RCLONE}
    results: dict[str, dict[str, list[dict]]] = {t: {"full": [], "empty": []} for t in tools}
    ok = True
    try:
        if "rclone" in tools:
            rclone.ensure(ctx)
        versions = {
            "server": server.version,
            "valgrind": valgrind_version,
            "Python": sys.version.split()[0],
        }
        if "s3s3" in tools:
            versions["s3s3/boto3/botocore"] = s3s3_peer.version(ctx)
        versions.update(ctx.versions)
        for tool in tools:
            why = copiers[tool].available(ctx)
            if why:
                log(f"{tool} cannot run: {why}")
                return 1
        ds = data.make_small(ctx, "w1", objects, sizes.small_bytes)
        empty_src = "src-empty"
        data.create_bucket(ctx, empty_src, side="src")
        log(f"source ready: {ds.count:,} objects in {ds.bucket}; empty source {empty_src}")
        for run in range(runs):
            for tool in tools:
                for kind, src in (("empty", empty_src), ("full", ds.bucket)):
                    dst = bucket_name("cg", tool, kind, run)
                    data.create_bucket(ctx, dst)
                    res = run_one(
                        ctx,
                        copiers[tool],
                        src_bucket=src,
                        dst_bucket=dst,
                        work=run_dir / f"{tool}-{kind}-{run}",
                        go=tool == "rclone",
                    )
                    if res["problem"] is None:
                        if kind == "full":
                            check = data.verify(ctx, ds, dst)
                            res["verified"] = check.summary()
                            if not check.ok:
                                res["problem"] = "copy not verified: " + check.summary()
                        else:
                            empty_ok, what = _check_empty(ctx, dst)
                            res["verified"] = what
                            if not empty_ok:
                                res["problem"] = "empty run copied something: " + what
                    data.empty_bucket(ctx, dst, remove=True)
                    prof = res["profile"]
                    if prof is not None:
                        covered = sum(prof.self_ir.values())
                        res["parsed_share"] = round(covered / prof.total_ir, 4)
                    log(
                        f"  run {run} {tool:6s} {kind:5s} "
                        + (
                            f"{prof.total_ir:>15,} Ir  {res['wall_s']:6.0f} s  "
                            f"{res.get('verified', '')}"
                            if prof
                            else ""
                        )
                        + (f"  FAILED: {res['problem']}" if res["problem"] else "")
                    )
                    ok = ok and res["problem"] is None
                    results[tool][kind].append(res)
    except KeyboardInterrupt:
        log("interrupted: the results are partial")
        ok = False
    finally:
        data.clear_local()
        if args.keep_server:
            log(f"server left running: {server.workdirs[0]}/endpoint.json")
        else:
            server.stop()
    date = time.strftime("%Y-%m-%d")
    flags = [f"--objects {objects}"] if args.objects else []
    flags += [f"--runs {runs}"] if args.runs else []
    flags += [f"--tools {','.join(tools)}"] if args.tools else []
    flags += ["--quick"] if args.quick else []
    meta = {
        "date": date,
        "started": run_dir.name,
        "command": " ".join(["python -m bench callgrind", *flags]),
        "objects": objects,
        "object_bytes": sizes.small_bytes,
        "runs": runs,
        "fallback": server.fallback,
        "machine": machine(),
        "versions": versions,
        "s3s3_revision": git_revision(),
        "duration_min": round((time.monotonic() - began) / 60, 1),
    }
    summary = summarize(results, objects)
    summary["breakdowns"] = breakdowns(results, objects)
    text = render(meta, summary, results, objects)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"{date}-callgrind" + ("-fallback" if server.fallback else "")
    stem += "-quick" if args.quick else ""
    md = RESULTS_DIR / f"{stem}.md"
    md.write_text(f"# Instructions per copied object, {date}\n\n{text}")
    (RESULTS_DIR / f"{stem}.json").write_text(
        json.dumps(
            {"meta": meta, "summary": summary, "runs": _records(results)}, indent=1, default=str
        )
        + "\n"
    )
    print(text)
    log(f"callgrind: {md} in {meta['duration_min']} min")
    update = args.readme if args.readme is not None else not args.quick and not server.fallback
    if update and ok and README.exists():
        readme = README.read_text()
        if README_BEGIN in readme and README_END in readme:
            head, rest = readme.split(README_BEGIN, 1)
            README.write_text(
                head + README_BEGIN + "\n" + text + README_END + rest.split(README_END, 1)[1]
            )
            log("bench/README.md updated")
    return 0 if ok else 1


# --------------------------------------------------------------------------- report


def _records(results: dict) -> list[dict]:
    out = []
    for tool, kinds in results.items():
        for kind, runs in kinds.items():
            for i, res in enumerate(runs):
                rec = {k: v for k, v in res.items() if k != "profile"}
                rec.update(tool=tool, kind=kind, run=i)
                rec["ir"] = res["profile"].total_ir if res["profile"] else None
                out.append(rec)
    return out


def summarize(results: dict, objects: int) -> dict:
    """Per tool: Ir of the full and the empty runs, and Ir per object with and without."""
    summary: dict[str, dict] = {}
    for tool, kinds in results.items():
        full = [r["profile"].total_ir for r in kinds["full"] if r["problem"] is None]
        empty = [r["profile"].total_ir for r in kinds["empty"] if r["problem"] is None]
        if not full:
            continue
        row: dict = {
            "ir_full": full,
            "ir_empty": empty,
            "per_object_with_startup": statistics.median(full) / objects,
        }
        if empty:
            row["startup_ir"] = statistics.median(empty)
            row["per_object"] = (statistics.median(full) - statistics.median(empty)) / objects
            if len(full) > 1 or len(empty) > 1:
                deltas = [(f - e) / objects for f in full for e in empty]
                row["per_object_spread"] = [min(deltas), max(deltas)]
        summary[tool] = row
    if "s3s3" in summary and "rclone" in summary:
        s, r = summary["s3s3"], summary["rclone"]
        summary["ratio_with_startup"] = s["per_object_with_startup"] / r["per_object_with_startup"]
        if "per_object" in s and "per_object" in r:
            summary["ratio"] = s["per_object"] / r["per_object"]
    return summary


def breakdowns(results: dict, objects: int) -> dict[str, list[tuple]]:
    """The report's tables as data (group, share, Ir/object with and without start-up).

    Shares are of the whole run, except in ``s3s3_interpreter``: of the interpreter's part.
    """
    out: dict[str, list[tuple]] = {}
    for tool, name, key in (
        ("s3s3", "s3s3_by_object_file", lambda ob, fn: object_category(ob)),
        ("rclone", "rclone_by_go_package", lambda ob, fn: go_package(fn)),
    ):
        full = _first_ok(results.get(tool, {}).get("full", []))
        if full is not None:
            empty = _first_ok(results[tool]["empty"])
            out[name] = breakdown(full, empty, objects, key)[:25]
    full = _first_ok(results.get("s3s3", {}).get("full", []))
    if full is not None:
        empty = _first_ok(results["s3s3"]["empty"])
        out["s3s3_interpreter"] = breakdown(
            _interpreter_only(full),
            _interpreter_only(empty) if empty else None,
            objects,
            lambda ob, fn: interpreter_category(fn),
        )
    return out


def _m(n: float) -> str:
    """Instructions in millions, to the precision a reader needs."""
    return f"{n / 1e6:,.2f} M" if n < 100e6 else f"{n / 1e6:,.0f} M"


def _first_ok(runs: list[dict]) -> Profile | None:
    return next((r["profile"] for r in runs if r["problem"] is None), None)


def render(meta: dict, summary: dict, results: dict, objects: int) -> str:
    v = meta["versions"]
    kib = meta["object_bytes"] // 1024
    lines = [
        f"Instructions (callgrind Ir) to copy {objects:,} objects of {kib} KiB into an empty "
        f"bucket, {meta['runs']} run(s) per tool ({meta['date']}; `{meta['command']}`; "
        f"{v.get('server', '?')}; {v.get('valgrind', 'valgrind')}; s3s3 "
        f"{meta['s3s3_revision']}, Python {v.get('Python', '?')}"
        + (f"; rclone {v['rclone']}" if "rclone" in v else "")
        + f"; {meta['duration_min']} min).",
        "",
        "| tool | Ir, copying "
        f"{objects:,} | Ir, copying 0 (start-up) | Ir per object, start-up included | "
        "**Ir per object, start-up subtracted** |",
        "|---|---|---|---|---|",
    ]
    names = {"s3s3": "s3s3bucket", "rclone": "rclone copy (defaults)"}
    for tool in TOOLS:
        row = summary.get(tool)
        if not row:
            continue
        spread = row.get("per_object_spread")
        per_object = (
            f"**{_m(row['per_object'])}**"
            + (f" ({_m(spread[0])}-{_m(spread[1])})" if spread else "")
            if "per_object" in row
            else "-"
        )
        lines.append(
            f"| {names[tool]} | {' / '.join(_m(n) for n in row['ir_full'])} | "
            f"{' / '.join(_m(n) for n in row['ir_empty']) or '-'} | "
            f"{_m(row['per_object_with_startup'])} | {per_object} |"
        )
    lines.append("")
    if "ratio" in summary:
        ratio = summary["ratio"]
        verdict = (
            "target met" if ratio <= TARGET_RATIO else f"**target not met**: above {TARGET_RATIO}"
        )
        lines += [
            f"s3s3 / rclone, start-up subtracted: **{ratio:.2f}** (target: at most "
            f"{TARGET_RATIO}; {verdict}); start-up included: "
            f"{summary['ratio_with_startup']:.2f}.",
            "",
        ]
    lines += [
        "- *Start-up subtracted* is the honest data-path figure at this count: the empty "
        "run (same tool, an empty source bucket into an empty destination: process start, "
        "imports or Go runtime, configuration, two empty listings) is taken off, and what "
        f"is left is divided by the {objects:,} objects. *Start-up included* is what one "
        f"run of {objects:,} objects costs per object.",
        "- The counts include every thread of the tool's process. valgrind runs those "
        "threads one at a time on a single core (the process runs ~50x slower), which "
        "changes timings, never the count of instructions a copy needs.",
        "- The server's work (RGW, OSD) runs in other processes and is not counted; nor is "
        "the kernel's (system calls, TCP).",
        "- rclone ran with `GODEBUG=asyncpreemptoff=1` (callgrind aborts on Go's preemption "
        "signals otherwise); every copy was verified (keys, sizes, md5 ETags), and every "
        "empty run left its destination empty.",
    ]
    s3s3_full = _first_ok(results.get("s3s3", {}).get("full", []))
    s3s3_empty = _first_ok(results.get("s3s3", {}).get("empty", []))
    if s3s3_full is not None:
        lines += [
            "",
            "Where s3s3bucket's instructions go, by object file (self cost; "
            "callgrind cannot see Python functions, only the C code running them):",
            "",
            "| object file | share of the run | Ir per object, incl. start-up | "
            "Ir per object, start-up subtracted |",
            "|---|---|---|---|",
        ]
        lines += _rows(
            breakdown(s3s3_full, s3s3_empty, objects, lambda ob, fn: object_category(ob)), 12
        )
        lines += [
            "",
            "Inside the interpreter, by C function:",
            "",
            "| interpreter functions | share of the run | Ir per object, incl. start-up | "
            "Ir per object, start-up subtracted |",
            "|---|---|---|---|",
        ]
        interp = _interpreter_only(s3s3_full)
        lines += _rows(
            breakdown(
                interp,
                _interpreter_only(s3s3_empty) if s3s3_empty else None,
                objects,
                lambda ob, fn: interpreter_category(fn),
            ),
            12,
            share_of=sum(s3s3_full.self_ir.values()),
            total=sum(interp.self_ir.values()),
        )
        lines += [
            "",
            "s3s3bucket's top C functions by data-path cost (self cost, start-up subtracted):",
            "",
        ]
        lines += _top_functions(s3s3_full, s3s3_empty, objects, 20)
    rclone_full = _first_ok(results.get("rclone", {}).get("full", []))
    rclone_empty = _first_ok(results.get("rclone", {}).get("empty", []))
    if rclone_full is not None:
        lines += [
            "",
            "rclone, by Go package (self cost):",
            "",
            "| package | share of the run | Ir per object, incl. start-up | "
            "Ir per object, start-up subtracted |",
            "|---|---|---|---|",
        ]
        lines += _rows(
            breakdown(rclone_full, rclone_empty, objects, lambda ob, fn: go_package(fn)), 15
        )
    return "\n".join(lines) + "\n"


def _interpreter_only(profile: Profile) -> Profile:
    """The part of ``profile`` spent in the interpreter's own object file."""
    return Profile(
        total_ir=0,
        self_ir=Counter(
            {
                k: n
                for k, n in profile.self_ir.items()
                if object_category(k[0]).startswith("interpreter")
            }
        ),
    )


def _rows(rows: list[tuple], limit: int, *, share_of: int = 0, total: int = 0) -> list[str]:
    out = []
    scale = total / share_of if share_of else 1.0  # shares of the whole run, not of the part
    for group, share, with_startup, without in rows[:limit]:
        out.append(
            f"| {group.replace('|', '/')} | {share * scale:.1%} | {with_startup:,.0f} | "
            + (f"{without:,.0f} |" if without is not None else "- |")
        )
    rest = rows[limit:]
    if rest:
        share = sum(r[1] for r in rest) * scale
        with_startup = sum(r[2] for r in rest)
        without = sum(r[3] or 0 for r in rest)
        out.append(f"| (the rest) | {share:.1%} | {with_startup:,.0f} | {without:,.0f} |")
    return out


def _top_functions(full: Profile, empty: Profile | None, objects: int, limit: int) -> list[str]:
    """The C functions costing most per object, start-up subtracted (the data path)."""
    base = empty.self_ir if empty is not None else Counter()
    total = sum(full.self_ir.values()) or 1
    lines = [
        "| function [object] | share of the run | Ir per object, start-up subtracted |",
        "|---|---|---|",
    ]
    for ob, fn in sorted(full.self_ir, key=lambda k: base[k] - full.self_ir[k])[:limit]:
        n = full.self_ir[(ob, fn)]
        lines.append(
            f"| `{fn}` [{os.path.basename(ob)}] | {n / total:.1%} | "
            f"{(n - base[(ob, fn)]) / objects:,.0f} |"
        )
    return lines
