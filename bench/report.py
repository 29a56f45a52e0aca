"""From the runs' records to the published table: medians, ranges, ratios, targets.

Every figure is computed from the records of this run (``bench/results/<date>.json`` keeps
them all); nothing is carried over from an earlier run. A failed or unverified run is left
out of the statistics and counted in the table. Rates are per run (objects or bytes over
that run's wall time), then the median and the min-max over the runs are shown.
MB is 10^6 bytes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .paths import README, REPO_ROOT
from .push import TOOL as PUSH_TOOL
from .push import WRITER_TOOL

README_BEGIN = "<!-- bench:latest:begin -->"
README_END = "<!-- bench:latest:end -->"


# --------------------------------------------------------------------------- statistics


def ok_runs(records: list[dict], workload: str, tool: str) -> list[dict]:
    return [r for r in records if r["workload"] == workload and r["tool"] == tool and r["ok"]]


def failed_count(records: list[dict], workload: str, tool: str) -> int:
    return sum(
        1 for r in records if r["workload"] == workload and r["tool"] == tool and not r["ok"]
    )


def tools_of(records: list[dict], workload: str) -> list[str]:
    seen: list[str] = []
    for r in records:
        if r["workload"] == workload and r["tool"] not in seen:
            seen.append(r["tool"])
    return seen


def obj_rate(r: dict) -> float:
    return r["objects"] / r["wall_s"]


def mb_rate(r: dict) -> float:
    return r["bytes"] / r["wall_s"] / 1e6


def median_of(runs: list[dict], metric: Callable[[dict], float | None]) -> float | None:
    values = [v for v in map(metric, runs) if v is not None]
    return statistics.median(values) if values else None


def spread(runs: list[dict], metric: Callable[[dict], float | None], fmt: str = "{:,.0f}") -> str:
    """``median (min-max)``; just the value for one run; ``-`` for none."""
    values = [v for v in map(metric, runs) if v is not None]
    if not values:
        return "-"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def per_object_ms(key: str) -> Callable[[dict], float | None]:
    def metric(r: dict) -> float | None:
        v = r.get(key)
        return None if v is None or not r["objects"] else v / r["objects"] * 1000

    return metric


def requests_per_object(r: dict) -> float | None:
    req = r.get("requests")
    return req["total"] / r["objects"] if req and r["objects"] else None


def cell(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


# --------------------------------------------------------------------------- tables


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _label(records: list[dict], workload: str, tool: str) -> str:
    runs = [r for r in records if r["workload"] == workload and r["tool"] == tool]
    label = tool
    partial = next((r.get("partial") for r in runs if r.get("partial")), None)
    if partial:
        label += f" [{partial}]"
    failed = failed_count(records, workload, tool)
    if failed:
        label += f" **{failed} of {len(runs)} runs failed**"
    return label


def small_table(records: list[dict]) -> str | None:
    tools = [t for t in tools_of(records, "W2") + tools_of(records, "W1")]
    tools = list(dict.fromkeys(tools))
    if not tools:
        return None
    ref = {w: median_of(ok_runs(records, w, "s3s3"), obj_rate) for w in ("W1", "W2")}
    rows = []
    for tool in tools:
        w1, w2 = ok_runs(records, "W1", tool), ok_runs(records, "W2", tool)
        main = w2 or w1
        rows.append(
            [
                _label(records, "W2" if w2 else "W1", tool),
                spread(w1, obj_rate),
                spread(w2, obj_rate),
                ratio(median_of(w1, obj_rate), ref["W1"]),
                ratio(median_of(w2, obj_rate), ref["W2"]),
                cell(median_of(main, lambda r: r["wall_s"]), "{:.1f}"),
                cell(median_of(main, lambda r: r["cpu_s"]), "{:.1f}"),
                cell(median_of(main, per_object_ms("cpu_s")), "{:.2f}"),
                cell(median_of(main, per_object_ms("server_cpu_s")), "{:.2f}"),
                cell(median_of(main, requests_per_object), "{:.2f}"),
                cell(median_of(main, lambda r: r["peak_rss_mb"])),
            ]
        )
    return _table(
        [
            "tool",
            "W1 obj/s",
            "W2 obj/s",
            "W1 tool/s3s3",
            "W2 tool/s3s3",
            "W2 wall s",
            "W2 client CPU s",
            "client CPU ms/obj",
            "server CPU ms/obj",
            "requests/obj",
            "peak RSS MB",
        ],
        rows,
    )


def ceiling_copy(records: list[dict], workload: str, metric) -> float | None:
    """The best copy rate the server allows: 1/(1/PUT + 1/GET), from s5cmd's medians."""
    put = median_of(ok_runs(records, workload, "ceiling: s5cmd PUT"), metric)
    get = median_of(ok_runs(records, workload, "ceiling: s5cmd GET"), metric)
    if not put or not get:
        return None
    return 1 / (1 / put + 1 / get)


def large_table(records: list[dict]) -> str | None:
    tools = list(dict.fromkeys(tools_of(records, "W3") + tools_of(records, "W5")))
    if not tools:
        return None
    ref = {w: median_of(ok_runs(records, w, "s3s3"), mb_rate) for w in ("W3", "W5")}
    rows = []
    for tool in tools:
        w3, w5 = ok_runs(records, "W3", tool), ok_runs(records, "W5", tool)
        rows.append(
            [
                _label(records, "W3" if w3 else "W5", tool),
                spread(w3, mb_rate),
                ratio(median_of(w3, mb_rate), ref["W3"]),
                cell(median_of(w3, lambda r: r["wall_s"]), "{:.1f}"),
                cell(median_of(w3, lambda r: r["peak_rss_mb"])),
                cell(median_of(w3, lambda r: r["cpu_s"]), "{:.1f}"),
                spread(w5, mb_rate),
                cell(median_of(w5, lambda r: r["peak_rss_mb"])),
            ]
        )
    return _table(
        [
            "tool",
            "W3 MB/s",
            "W3 tool/s3s3",
            "W3 wall s",
            "W3 peak RSS MB",
            "W3 client CPU s",
            "W5 MB/s",
            "W5 peak RSS MB",
        ],
        rows,
    )


def noop_table(records: list[dict]) -> str | None:
    tools = tools_of(records, "W4")
    if not tools:
        return None
    ref = median_of(ok_runs(records, "W4", "s3s3"), lambda r: r["wall_s"])
    rows = []
    for tool in tools:
        runs = ok_runs(records, "W4", tool)
        med = median_of(runs, lambda r: r["wall_s"])
        reqs = median_of(runs, lambda r: (r.get("requests") or {}).get("total"))
        kinds = _request_kinds(runs)
        rows.append(
            [
                _label(records, "W4", tool),
                spread(runs, lambda r: r["wall_s"], "{:.2f}"),
                ratio(med, ref),
                cell(reqs),
                kinds,
                cell(median_of(runs, lambda r: r["cpu_s"]), "{:.2f}"),
            ]
        )
    return _table(
        ["tool", "seconds", "time tool/s3s3", "requests", "of which", "client CPU s"], rows
    )


def _request_kinds(runs: list[dict]) -> str:
    if not runs or not runs[0].get("requests"):
        return "-"
    req = runs[len(runs) // 2]["requests"]
    return ", ".join(f"{k} {v}" for k, v in sorted(req.items()) if k != "total")


def planner_table(records: list[dict]) -> str | None:
    runs = ok_runs(records, "W6", "s3s3 planner")
    if not runs:
        return None
    probe = [r["probe"] for r in runs]
    keys = probe[0]["keys"]
    return _table(
        [
            "what",
            "keys",
            "peak RSS MB (whole process)",
            "growth while planning MB",
            "planning wall s",
            "planning CPU s",
        ],
        [
            [
                "s3s3 plan_keys over generated listings",
                f"{keys:,}",
                spread(runs, lambda r: r["peak_rss_mb"]),
                spread([{"v": p["planning_growth_mb"]} for p in probe], lambda r: r["v"], "{:.1f}"),
                spread([{"v": p["plan_wall_s"]} for p in probe], lambda r: r["v"], "{:.1f}"),
                spread([{"v": p["plan_cpu_s"]} for p in probe], lambda r: r["v"], "{:.1f}"),
            ]
        ],
    )


def listener_table(records: list[dict]) -> str | None:
    tools = tools_of(records, "W7")
    if not tools:
        return None
    legacy = median_of(
        ok_runs(records, "W7", "s3s3listen 0.1.10 (2015)"), lambda r: r.get("sus_eps")
    )
    rows = []
    for tool in tools:
        runs = ok_runs(records, "W7", tool)
        rate = median_of(runs, lambda r: r.get("sus_eps"))
        saturated = any(
            (r.get("lat_achieved_eps") or 0) < 0.9 * (r.get("lat_offered_eps") or 0) for r in runs
        )
        rows.append(
            [
                _label(records, "W7", tool),
                spread(runs, lambda r: r.get("sus_eps")),
                ratio(rate, legacy),
                cell(median_of(runs, lambda r: r.get("sus_cpu_ms_per_event")), "{:.2f}"),
                spread(runs, lambda r: r.get("lat_p50_ms"), "{:,.1f}"),
                spread(runs, lambda r: r.get("lat_p99_ms"), "{:,.1f}")
                + (" (saturated)" if saturated else ""),
                cell(median_of(runs, requests_per_object), "{:.2f}"),
                cell(median_of(runs, lambda r: r["peak_rss_mb"])),
            ]
        )
    rate_hdr = f"latency p50 ms at {_offered(records)}/s"
    return _table(
        [
            "listener",
            "sustained events/s",
            "s3s3/2015",
            "CPU ms/event (sustained)",
            rate_hdr,
            "p99 ms",
            "requests/event",
            "peak RSS MB",
        ],
        rows,
    )


def _offered(records: list[dict]) -> str:
    for r in records:
        if r["workload"] == "W7" and r.get("lat_offered_eps"):
            return f"{r['lat_offered_eps']:g}"
    return "?"


def ceiling_table(records: list[dict]) -> str | None:
    rows = []
    for workload, metric, unit in (
        ("W1", obj_rate, "obj/s"),
        ("W2", obj_rate, "obj/s"),
        ("W3", mb_rate, "MB/s"),
    ):
        put = ok_runs(records, workload, "ceiling: s5cmd PUT")
        get = ok_runs(records, workload, "ceiling: s5cmd GET")
        if not put and not get:
            continue
        fmt = "{:,.0f}"
        # A large object's GET streams into its PUT, both at once: the PUT is its ceiling.
        ceiling = (
            "the PUT's (GET and PUT overlap)"
            if workload == "W3"
            else cell(ceiling_copy(records, workload, metric))
        )
        rows.append([workload, unit, spread(put, metric, fmt), spread(get, metric, fmt), ceiling])
    if not rows:
        return None
    return _table(
        [
            "workload",
            "unit",
            "s5cmd PUT",
            "s5cmd GET",
            "copy ceiling: 1/(1/PUT+1/GET) for small objects",
        ],
        rows,
    )


# --------------------------------------------------------------------------- summary


def metrics_cost_lines(records: list[dict]) -> list[str]:
    """W2 and W7 with the metrics on beside the same tool with them off (target: < 3%)."""
    lines = []
    w2_on = median_of(ok_runs(records, "W2", "s3s3 (metrics on)"), obj_rate)
    w2_off = median_of(ok_runs(records, "W2", "s3s3"), obj_rate)
    if w2_on and w2_off:
        lines.append(
            f"- **Metrics cost, W2** (textfile written): {w2_on:,.0f} against {w2_off:,.0f} "
            f"obj/s, {1 - w2_on / w2_off:+.1%} (target < 3%)"
        )
    on = ok_runs(records, "W7", "s3s3listen (stream, metrics on)")
    off = ok_runs(records, "W7", "s3s3listen (stream)")
    w7_on = median_of(on, lambda r: r.get("sus_eps"))
    w7_off = median_of(off, lambda r: r.get("sus_eps"))
    if w7_on and w7_off:
        p99_on = median_of(on, lambda r: r.get("lat_p99_ms"))
        p99_off = median_of(off, lambda r: r.get("lat_p99_ms"))
        lines.append(
            f"- **Metrics cost, W7** (/metrics scraped every second): {w7_on:,.0f} against "
            f"{w7_off:,.0f} events/s, {1 - w7_on / w7_off:+.1%} (target < 3%); p99 "
            f"{p99_on:,.1f} against {p99_off:,.1f} ms"
        )
    return lines


def summary_lines(records: list[dict]) -> list[str]:
    """For each workload: s3s3 against the best peer, the ceiling, and the issue's target."""
    lines = []

    def best_peer(workload: str, metric, higher: bool = True, exclude=("s3s3",)):
        best = None
        for tool in tools_of(records, workload):
            if tool in exclude or tool.startswith("ceiling") or tool.startswith("s3s3listen ("):
                continue
            runs = ok_runs(records, workload, tool)
            if any(r.get("partial") for r in runs):
                continue  # the 2015 s3s3 did not do the same work
            value = median_of(runs, metric)
            if value is not None and (best is None or (value > best[1]) == higher):
                best = (tool, value)
        return best

    for workload, metric, unit in (
        ("W1", obj_rate, "obj/s"),
        ("W2", obj_rate, "obj/s"),
        ("W3", mb_rate, "MB/s"),
        ("W5", mb_rate, "MB/s"),
    ):
        mine = median_of(ok_runs(records, workload, "s3s3"), metric)
        if mine is None:
            continue
        text = f"- **{workload}**: s3s3 {mine:,.0f} {unit}"
        peer = best_peer(workload, metric)
        if peer:
            text += f"; best peer {peer[0]} {peer[1]:,.0f} ({mine / peer[1]:.2f}x)"
        if workload in ("W1", "W2"):
            ceil = ceiling_copy(records, workload, metric)
            if ceil:
                text += f"; {mine / ceil:.0%} of the copy ceiling ({ceil:,.0f})"
        else:
            put = median_of(ok_runs(records, workload, "ceiling: s5cmd PUT"), metric)
            if put:
                text += f"; {mine / put:.0%} of the upload ceiling (s5cmd PUT {put:,.0f})"
        rss = median_of(ok_runs(records, workload, "s3s3"), lambda r: r["peak_rss_mb"])
        if rss and workload in ("W3", "W5"):
            text += f"; peak RSS {rss:,.0f} MB (target < 100)"
        lines.append(text)
    mine = median_of(ok_runs(records, "W4", "s3s3"), lambda r: r["wall_s"])
    if mine is not None:
        peer = best_peer("W4", lambda r: r["wall_s"], higher=False)
        text = f"- **W4**: s3s3 {mine:.2f} s"
        if peer:
            text += f"; fastest peer {peer[0]} {peer[1]:.2f} s (s3s3 takes {mine / peer[1]:.2f}x)"
        lines.append(text)
    runs = ok_runs(records, "W6", "s3s3 planner")
    if runs:
        lines.append(
            f"- **W6**: planning {runs[0]['objects']:,} keys, peak RSS "
            f"{median_of(runs, lambda r: r['peak_rss_mb']):,.0f} MB (target < 300)"
        )
    lines += metrics_cost_lines(records)
    push = ok_runs(records, "W7", PUSH_TOOL)
    if push:
        rate = median_of(push, lambda r: r.get("sus_eps"))
        writer = median_of(ok_runs(records, "W7", WRITER_TOOL), lambda r: r.get("sus_eps"))
        stream = median_of(
            ok_runs(records, "W7", "s3s3listen (stream)"), lambda r: r.get("sus_eps")
        )
        p99 = median_of(push, lambda r: r.get("lat_p99_ms"))
        text = f"- **W7 RGW push (sync topic)**: p99 {p99:,.1f} ms from the source PUT at "
        text += f"{_offered(records)}/s (target < 100)"
        if rate is not None and writer:
            text += (
                f"; {rate:,.0f} events/s with the PUTs in the loop, {rate / writer:.0%} of "
                "stream mode's with the same PUTs announced by the writer (target >= 90%)"
            )
        if rate is not None and stream:
            text += f"; {rate / stream:.0%} of stream mode's over pre-uploaded keys"
        lines.append(text)
    for tool in tools_of(records, "W7"):
        if not tool.startswith("s3s3listen (") or tool == WRITER_TOOL or "metrics on" in tool:
            continue
        runs = ok_runs(records, "W7", tool)
        rate = median_of(runs, lambda r: r.get("sus_eps"))
        p99 = median_of(runs, lambda r: r.get("lat_p99_ms"))
        legacy = median_of(
            ok_runs(records, "W7", "s3s3listen 0.1.10 (2015)"), lambda r: r.get("sus_eps")
        )
        if rate is None:
            continue
        text = f"- **W7 {tool}**: {rate:,.0f} events/s (target >= 400)"
        if legacy:
            text += f", {rate / legacy:.1f}x the 2015 listener (target >= 10x)"
        if p99 is not None:
            text += f"; p99 {p99:,.1f} ms at {_offered(records)}/s (target < 100)"
        lines.append(text)
    return lines


# --------------------------------------------------------------------------- document


def machine() -> dict[str, str]:
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024**2:.1f} GiB",
        "cpu": model,
        "os": platform.platform(),
    }


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=REPO_ROOT
        ).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "s3s3")
    return f"{rev}{' + uncommitted changes in s3s3/' if dirty else ''}" if rev else "?"


def render(meta: dict, records: list[dict]) -> str:
    parts = [f"# s3s3 benchmark, {meta['date']}", ""]
    if meta.get("fallback"):
        parts += [
            "> **FALLBACK SERVER: moto, not Ceph RGW. These figures say nothing about a "
            "real store.**",
            "",
        ]
    if meta.get("quick"):
        parts += ["> `--quick`: small counts, for checking the harness. Not a result.", ""]
    m = meta["machine"]
    parts += [
        f"- Command: `{meta['command']}` ({meta['runs']} runs per tool, interleaved; "
        f"took {meta.get('duration_min', '?')} min)",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory']}, {m['os']}; "
        f"load average (1, 5, 15 min) at start {meta.get('load_at_start', '?')}, at the end "
        f"{meta.get('load_at_end', '?')}",
        f"- Server: {meta['server']} on loopback; client and server share the cores",
        "- Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "- Ratios: `tool/s3s3` is the tool's median over s3s3's (for rates, above 1 means "
        "faster than s3s3; for W4's seconds, above 1 means slower).",
        "- Wall time covers the whole process; CPU is user+sys and peak RSS is max RSS, both "
        "from `/usr/bin/time` (the tool's own process); requests are counted from RGW's access "
        f"log{' (not on the fallback: none counted)' if meta.get('fallback') else ''}; every run is verified afterwards (keys, sizes, ETag = md5; md5 of the bytes "
        "read back for objects of 8 MiB and more).",
        "",
        "## Summary: s3s3 against the best peer and the server's ceiling",
        "",
        *(summary_lines(records) or ["- (no s3s3 runs)"]),
        "",
    ]
    sections = [
        ("Small objects: W1 1,000 and W2 10,000 x 4 KiB into an empty bucket", small_table),
        ("Server ceiling (s5cmd: PUT from tmpfs, GET to tmpfs)", ceiling_table),
        ("Large objects: W3 4 x 256 MiB, W5 1 x 1 GiB", large_table),
        ("No-op re-run: W4, the destination already complete", noop_table),
        ("Planning: W6", planner_table),
        ("Listener: W7, 4 KiB objects", listener_table),
    ]
    for title, fn in sections:
        table = fn(records)
        if table:
            parts += [f"## {title}", "", table, ""]
    if meta.get("sizes"):
        s = meta["sizes"]
        parts += [
            f"Sizes: W1 {s['w1_count']:,}, W2 {s['w2_count']:,} x {s['small_bytes']:,} B; "
            f"W3 {s['w3_count']} x {s['w3_bytes'] / 2**20:,.0f} MiB; "
            f"W5 {s['w5_bytes'] / 2**20:,.0f} MiB; W6 {s['w6_keys']:,} keys; W7 "
            f"{s['w7_sustained']:,} sustained keys ({s['w7_sustained_2015']:,} for the "
            f"2015 listener), latency at {s['w7_rate']:g}/s for {s['w7_latency_s']:g} s "
            f"({s.get('w7_latency_s_2015', s['w7_latency_s']):g} s for the 2015 "
            f"listener).",
            "",
        ]
    notes = meta.get("notes") or []
    if notes:
        parts += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    parts += [
        f"W6 uses generated listings (a million uploads would take longer than the whole "
        f"run); W7's replicated time is when RGW logged the destination PUT. Raw "
        f"records: `{meta['json_name']}`.",
        "",
    ]
    if meta.get("plot_name"):
        parts += [f"![objects/s and MB/s per tool]({meta['plot_name']})", ""]
    return "\n".join(parts)


def write_results(results_dir: Path, meta: dict, records: list[dict], *, stem: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    meta["json_name"] = f"{stem}.json"
    (results_dir / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "records": records}, indent=1, default=str) + "\n"
    )
    md = results_dir / f"{stem}.md"
    md.write_text(render(meta, records))
    return md


def update_readme(markdown: str, *, results_link: str) -> bool:
    """Replace the marked section of bench/README.md with the latest table."""
    if not README.exists():
        return False
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    body = re.sub(r"^# .*\n", "", markdown, count=1)  # the file has its own title
    body = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", body, flags=re.M)
    body = body.replace("](", "](results/") if "](results/" not in body else body
    new = (
        text.split(README_BEGIN)[0]
        + README_BEGIN
        + "\n"
        + f"_Generated by `python -m bench` on {time.strftime('%Y-%m-%d')}; "
        f"full file: [{results_link}](results/{results_link})._\n\n"
        + body.strip()
        + "\n"
        + README_END
        + text.split(README_END, 1)[1]
    )
    README.write_text(new)
    return True
