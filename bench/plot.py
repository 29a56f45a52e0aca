"""The PNG: objects/s (W1, W2), MB/s (W3, W5) and events/s (W7) per tool, median and range.

Run with the tools venv's Python, which has matplotlib (a benchmark dependency only)::

    bench/work/venv-tools/bin/python -m bench.plot results/DATE.json results/DATE.png
"""

from __future__ import annotations

import json
import statistics
import sys


def _series(records, workloads, metric):
    tools: list[str] = []
    for r in records:
        if r["workload"] in workloads and r["tool"] not in tools:
            tools.append(r["tool"])
    out = []
    for tool in tools:
        row = []
        for w in workloads:
            values = [
                metric(r) for r in records if r["workload"] == w and r["tool"] == tool and r["ok"]
            ]
            values = [v for v in values if v is not None]
            row.append((statistics.median(values), min(values), max(values)) if values else None)
        out.append((tool, row))
    return out


def _panel(ax, series, workloads, title, unit, colors):
    import numpy as np

    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(workloads))
    for i, (tool, row) in enumerate(series):
        meds = [v[0] if v else 0 for v in row]
        err = [[(v[0] - v[1]) if v else 0 for v in row], [(v[2] - v[0]) if v else 0 for v in row]]
        hatch = "//" if tool.startswith("ceiling") else None
        bars = ax.bar(
            x + (i - (n - 1) / 2) * width,
            meds,
            width,
            yerr=err,
            capsize=2,
            label=tool,
            hatch=hatch,
            color=colors[tool],
        )
        for bar, v in zip(bars, row, strict=True):
            if v:
                ax.annotate(
                    f"{v[0]:,.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(x, workloads)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src, out = argv
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = json.load(open(src))
    records, meta = doc["records"], doc["meta"]
    panels = [
        (
            ("W1", "W2"),
            lambda r: r["objects"] / r["wall_s"],
            "4 KiB objects into an empty bucket",
            "objects/s",
        ),
        (
            ("W3", "W5"),
            lambda r: r["bytes"] / r["wall_s"] / 1e6,
            "large objects (4x256 MiB, 1 GiB)",
            "MB/s",
        ),
        (("W7",), lambda r: r.get("sus_eps"), "listener, sustained", "events/s"),
    ]
    panels = [p for p in panels if any(r["workload"] in p[0] for r in records)]
    if not panels:
        return 0
    palette = plt.get_cmap("tab10").colors
    tools = list(dict.fromkeys(r["tool"] for r in records))
    colors = {t: palette[i % len(palette)] for i, t in enumerate(tools)}
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for ax, (workloads, metric, title, unit) in zip(axes[:, 0], panels, strict=False):
        _panel(ax, _series(records, workloads, metric), list(workloads), title, unit, colors)
    fig.suptitle(
        f"s3s3 benchmark {meta['date']} - {meta['server']}"
        f"{' - QUICK (not a result)' if meta.get('quick') else ''}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
