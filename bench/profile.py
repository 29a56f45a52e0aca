"""``python -m bench profile``: where s3s3bucket spends its CPU on W2 (10,000 x 4 KiB).

s3s3bucket runs under ``py-spy record --format raw`` (sampled stacks of the threads that
are running, not waiting), on its own RGW. Each sample's innermost frame is charged "own"
time; frames are then grouped into categories by file: signing, serialization and
validation, response parsing, its event and endpoint machinery, HTTP (urllib3 and
http.client), threads and queues, hashing, logging, s3s3's own code. The server's CPU over
the same run comes from /proc, for the client/server split.

Writes ``bench/results/profile-<date>.md`` (and the raw stacks beside the run's logs), and
the marked profile section of bench/README.md.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from .paths import README, RESULTS_DIR

README_BEGIN = "<!-- bench:profile:begin -->"
README_END = "<!-- bench:profile:end -->"

#: (category, regex on "function (file)") — first match wins.
CATEGORIES = [
    ("start-up: imports", r"<frozen importlib|importlib/|\(<module>\)|_find_and_load"),
    (
        "signing: s3s3.store.signing, botocore's signers, HMAC, SHA-256",
        r"s3s3/store/signing\.py|botocore/auth\.py|botocore/signers\.py|hmac\.py|botocore/crt",
    ),
    ("botocore: serialization + validation", r"botocore/serialize\.py|botocore/validate\.py"),
    (
        "botocore: response parsing (XML)",
        r"botocore/parsers\.py|xml/etree|ElementTree|"
        r"xml\.etree|pyexpat",
    ),
    (
        "botocore: events, endpoint rules, models, retries",
        r"botocore/(hooks|handlers|endpoint_provider|regionsm|regions|client|args|model|utils|"
        r"retries|retryhandler|context|useragent|configprovider|httpchecksum|response|"
        r"eventstream|credentials|paginate|compat|loaders|docs)|boto3/",
    ),
    (
        "HTTP: botocore endpoint, urllib3, http.client, sockets",
        r"botocore/(endpoint|httpsession|awsrequest)\.py|urllib3/|http/client\.py|socket\.py|"
        r"ssl\.py|email/|selectors\.py",
    ),
    ("threads, queues, futures", r"threading\.py|queue\.py|concurrent/futures"),
    ("hashing (md5)", r"hashlib|md5"),
    ("logging", r"logging/"),
    ("s3s3 itself", r"[(/]s3s3/"),
]


def categorize(frame: str) -> str:
    for name, pattern in CATEGORIES:
        if re.search(pattern, frame):
            return name
    return "other"


def parse_raw(path: Path) -> tuple[Counter, Counter, int]:
    """Own samples per function and per category, and the total, from py-spy's raw output."""
    own: Counter = Counter()
    cats: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        own[leaf] += n
        # A leaf in a C function called from Python shows the Python caller: categorize by
        # the innermost frame that matches a category, else "other".
        cat = "other"
        for frame in reversed(frames):
            cat = categorize(frame)
            if cat != "other":
                break
        cats[cat] += n
        total += n
    return own, cats, total


def render(
    *,
    objects: int,
    rate: int,
    wall_s: float,
    server_cpu_s: float,
    own: Counter,
    cats: Counter,
    total: int,
    command: str,
    date: str,
    gil: bool = False,
) -> str:
    cpu_s = total / rate
    lines = [
        f"s3s3bucket copying {objects:,} objects of 4 KiB into an empty bucket, under py-spy "
        f"at {rate} samples/s ({date}; `{command}`).",
        "",
        f"- wall {wall_s:.1f} s ({objects / wall_s:,.0f} obj/s under the profiler)",
        (
            f"- samples of the thread holding the GIL: {cpu_s:.1f} s = "
            f"{cpu_s / objects * 1000:.2f} ms per object (Python code only; system calls made "
            f"without the GIL are not in this profile)"
            if gil
            else f"- client CPU sampled: {cpu_s:.1f} s = {cpu_s / objects * 1000:.2f} ms per object "
            f"(py-spy counts a thread while it is running or runnable, not while it waits on a "
            f"socket: on a busy machine, waiting for a core is charged to where the thread woke)"
        ),
        f"- server (RGW + OSD + mon) CPU over the run: {server_cpu_s:.1f} s = "
        f"{server_cpu_s / objects * 1000:.2f} ms per object",
        "",
        "| where (own CPU) | share | ms/object |",
        "|---|---|---|",
    ]
    for cat, n in cats.most_common():
        lines.append(f"| {cat} | {n / total:.0%} | {n / rate / objects * 1000:.3f} |")
    lines += ["", "Top functions by own CPU:", "", "| function (file) | share |", "|---|---|"]
    for fn, n in own.most_common(25):
        fn = fn.replace("|", "\\|")
        fn = re.sub(r"\(/[^)]*/(site-packages|lib/python3\.\d+|work/main)/", "(", fn)
        lines.append(f"| `{fn}` | {n / total:.1%} |")
    return "\n".join(lines) + "\n"


def profile(args, *, run_dir: Path, log) -> int:
    from . import data
    from .context import Context, Sizes
    from .install import ensure_tools
    from .measure import require_time_bin
    from .peers import S3S3, CopyJob
    from .servers import start_server

    require_time_bin()
    tools_bin = ensure_tools(log=log)
    py_spy = tools_bin / "py-spy"
    sizes = Sizes.quick() if args.quick else Sizes()
    objects = args.objects or sizes.w2_count
    server = start_server(force_moto=args.moto, log=log)
    ctx = Context(
        server=server,
        run_dir=run_dir,
        sizes=sizes,
        runs=1,
        log=log,
        tools_bin=tools_bin,
        s3s3_bucket_cmd=args.s3s3_bucket_cmd,
    )
    try:
        why = S3S3.available(ctx)
        if why:
            log(f"s3s3bucket cannot run: {why}")
            return 1
        ds = data.make_small(ctx, "w2", objects, sizes.small_bytes)
        dst = "d-profile"
        data.create_bucket(ctx, dst)
        work = run_dir / "profile"
        work.mkdir(parents=True, exist_ok=True)
        inv = S3S3.build(ctx, CopyJob(ds.bucket, dst, work))
        raw = work / "py-spy.raw.txt"
        argv = [
            str(py_spy),
            "record",
            "--format",
            "raw",
            "--rate",
            str(args.rate),
            "--nonblocking",
            "-o",
            str(raw),
        ]
        argv += ["--gil"] if args.gil else []
        argv += ["--native"] if args.native else []
        argv += ["--", *inv.argv]
        log(f"profiling: {' '.join(argv[:8])} ... ({objects:,} objects)")
        cpu0 = server.cpu_s()
        began = time.monotonic()
        result = subprocess.run(argv, env=inv.env, cwd=inv.cwd, capture_output=True, text=True)
        wall = time.monotonic() - began
        server_cpu = server.cpu_s() - cpu0
        (work / "output.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0 or not raw.exists():
            log(f"py-spy or s3s3bucket failed ({result.returncode}): {result.stderr[-1500:]}")
            return 1
        check = data.verify(ctx, ds, dst)
        log(f"copy {'verified' if check.ok else 'FAILED: ' + check.summary()}")
    finally:
        data.clear_local()
        server.stop()
    own, cats, total = parse_raw(raw)
    date = time.strftime("%Y-%m-%d")
    flags = [
        f
        for f, on in (("--quick", args.quick), ("--gil", args.gil), ("--native", args.native))
        if on
    ]
    text = render(
        objects=objects,
        rate=args.rate,
        wall_s=wall,
        server_cpu_s=server_cpu,
        own=own,
        cats=cats,
        total=total,
        date=date,
        gil=args.gil,
        command=" ".join(["python -m bench profile", *flags]),
    )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"profile-{date}{'-quick' if args.quick else ''}.md"
    out.write_text(f"# Where s3s3bucket spends its CPU, {date}\n\n{text}")
    print(text)
    log(f"profile: {out}; raw stacks: {raw}")
    update = args.readme if args.readme is not None else not args.quick
    if update and README.exists():
        readme = README.read_text()
        if README_BEGIN in readme and README_END in readme:
            README.write_text(
                readme.split(README_BEGIN)[0]
                + README_BEGIN
                + "\n"
                + text
                + README_END
                + readme.split(README_END, 1)[1]
            )
    return 0 if check.ok else 1
