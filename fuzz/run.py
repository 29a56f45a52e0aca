"""Run each fuzz target for a bounded time and report executions, coverage and crashes.

    python fuzz/run.py [--seconds N] [--artifacts DIR] [--keep-going] [TARGET ...] [-- FLAGS]

TARGET is ``messages``, ``config`` or ``listing`` (all three by default); N defaults to
``$FUZZ_SECONDS`` or 20 per target. Each target starts from a fresh copy of its seed corpus
(``fuzz/corpus/<target>``) in a temporary directory, so a run never writes into the
checkout, with its dictionary (``fuzz/<target>.dict``: the tokens the parser looks for). A crashing input is saved under the artifacts directory (a new temporary one
unless given) and its path and traceback are printed; the exit status is then 1.
``--keep-going`` records each distinct finding and fuzzes on instead of stopping at the
first (see fuzz/_harness.py). Flags after ``--`` go to libFuzzer as they are.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("messages", "config", "listing")
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)/)?", re.M)
_EXECS = re.compile(r"^stat::number_of_executed_units: (\d+)", re.M)
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)
_CRASH_FILE = re.compile(r"Test unit written to (\S+)")
# Deep nesting needs long inputs (see fuzz_messages.py); the other targets keep the default.
TARGET_FLAGS = {"messages": ["-max_len=65536", "-len_control=0"]}


def run_target(
    target: str, seconds: int, artifacts: Path, keep_going: bool, flags: list[str]
) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"s3s3-fuzz-{target}-"))
    corpus = work / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)
    seeds = len(list(corpus.iterdir()))
    log_path = artifacts / f"{target}.log"
    # libFuzzer ends the process with _exit, so a target's atexit clean-up never runs: its
    # temporary files go under the work directory, which is removed here.
    env = dict(os.environ, TMPDIR=str(work))
    findings = artifacts / f"{target}-findings"
    if keep_going:
        env["FUZZ_KEEP_GOING"] = str(findings)
    dict_path = HERE / f"{target}.dict"
    dictionary = [f"-dict={dict_path}"] if dict_path.is_file() else []
    cmd = [
        sys.executable,
        str(HERE / f"fuzz_{target}.py"),
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        "-timeout=30",
        f"-artifact_prefix={artifacts}/{target}-",
        *dictionary,
        *TARGET_FLAGS.get(target, []),
        *flags,
        str(corpus),
    ]
    began = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            rc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=seconds + 300
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    elapsed = time.monotonic() - began
    out = log_path.read_text("utf-8", "replace")
    status = _STATUS.findall(out)
    execs = _EXECS.findall(out) or [s[0] for s in status[-1:]]
    result = {
        "target": target,
        "rc": rc,
        "seconds": round(elapsed, 1),
        "execs": int(execs[-1]) if execs else 0,
        "cov": int(status[-1][1]) if status else 0,
        "ft": int(status[-1][2]) if status else 0,
        "seeds": seeds,
        "corpus": len(list(corpus.iterdir())),
        "crash": _CRASH_FILE.findall(out),
        "findings": sorted(str(p) for p in findings.glob("*.txt")) if keep_going else [],
        "log": str(log_path),
    }
    if rc != 0 and not result["crash"]:
        result["crash"] = [f"(exit status {rc}; see {log_path})"]
    if rc != 0:
        start = out.find("=== Uncaught Python exception")
        result["traceback"] = out[start : start + 4000] if start >= 0 else out[-3000:]
    shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, flags = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(prog="python fuzz/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 20)))
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--keep-going", action="store_true")
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (targets: {', '.join(TARGETS)})")
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="s3s3-fuzz-artifacts-"))
    artifacts.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts.resolve()
    failed = 0
    print(
        f"fuzzing {', '.join(targets)} for {args.seconds} s each; logs and crashes in {artifacts}",
        flush=True,
    )
    for target in targets:
        r = run_target(target, args.seconds, artifacts, args.keep_going, flags)
        print(
            f"{target:9} {r['execs']:>10,} execs in {r['seconds']:6.1f} s  cov: {r['cov']:5} "
            f"ft: {r['ft']:6}  corpus: {r['seeds']} seeds -> {r['corpus']}  "
            f"crashes: {len(r['crash'])}  findings: {len(r['findings'])}",
            flush=True,
        )
        for path in r["crash"] + r["findings"]:
            print(f"  saved: {path}")
        if r.get("traceback"):
            print("  " + r["traceback"].replace("\n", "\n  "))
        failed += r["rc"] != 0 or bool(r["findings"])
    if not failed and args.artifacts is None:
        shutil.rmtree(artifacts, ignore_errors=True)
    # The plain closing line CI reads: one target is one test.
    print(f"fuzz: {len(targets) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
