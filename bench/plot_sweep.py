#!/usr/bin/env python3
"""Plots the stored-room fan-out sweep of bench/large.sh (fanout rows labelled sweep-*):
delivery latency p99 and server CPU per delivery against the publish rate, one line per
subscriber count, chatserver solid and bare-broadcast dashed.

    python3 -m venv target/plotvenv && target/plotvenv/bin/pip install matplotlib
    target/plotvenv/bin/python bench/plot_sweep.py RESULTS.jsonl [MORE.jsonl...] docs/bench-sweep.png
"""
import json
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    *inputs, png = sys.argv[1:]
    rows = []
    for path in inputs:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    v = json.loads(line)
                    if v.get("scenario") == "fanout" and str(v.get("label", "")).startswith("sweep-"):
                        rows.append(v)
    if not rows:
        sys.exit("no fanout rows labelled sweep-* in " + ", ".join(inputs))
    series = defaultdict(list)  # (target, subs) -> [(rate, row)]
    for v in rows:
        series[(v["target"], v["subs"])].append((v["rate"], v))
    subs_all = sorted({k[1] for k in series})
    colors = dict(zip(subs_all, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for (target, subs), pts in sorted(series.items()):
        pts.sort(key=lambda p: p[0])
        rates = [p[0] for p in pts]
        style = "-" if target == "chatserver" else "--"
        marker = "o" if target == "chatserver" else "s"
        name = f"{'chatserver' if target == 'chatserver' else 'bare'} {subs} subs"
        ax1.plot(rates, [max(p[1]["p99_ms"], 0.01) for p in pts], style, marker=marker, color=colors[subs], label=name)
        ax2.plot(rates, [p[1]["server_us_per_delivery"] for p in pts], style, marker=marker, color=colors[subs], label=name)
        for r, v in pts:
            bad = v.get("lost", 0) > 0 or any("close 4008" in k for k in v.get("events", {}))
            if bad:  # lossy or slow-consumer closes: ring the point
                ax1.plot([r], [max(v["p99_ms"], 0.01)], "o", ms=14, mfc="none", mec="red")
    ax1.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xticks(sorted({v["rate"] for v in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.set_xlabel("publishes/s (total, 4 publishers)")
    ax1.set_ylabel("delivery latency p99, ms (log)")
    ax1.set_title("p99 delivery latency (red ring: loss or 4008 closes)")
    ax2.set_xlabel("publishes/s (total, 4 publishers)")
    ax2.set_ylabel("server CPU µs per delivery")
    ax2.set_title("server CPU per delivery")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    when = sorted({str(v.get("label")) for v in rows})
    stem = os.path.splitext(os.path.basename(inputs[0]))[0]
    src = os.path.basename(os.path.dirname(os.path.abspath(inputs[0]))) if stem == "results" else stem
    fig.suptitle(f"room fan-out sweep ({src}): chatserver (solid) vs bare-broadcast (dashed), {len(rows)} runs")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png} from {len(rows)} runs ({', '.join(when[:3])}...)")


if __name__ == "__main__":
    main()
