"""Build throughput: clips per minute at the default size (49 frames, 240x360), by engine and worker count.

    .venv/bin/python benchmarks/build_throughput.py [--max-clips 3] [--out bench_out/build]

Builds the same dataset from the three bundled sample clips (at most `--max-clips` clips each, the default
split backends) from scratch with: 1 local worker (the baseline), 2 local workers, and Ray (local, 2 CPUs).
Prints wall time, clips per minute (every candidate clip counts, ok or skipped, since each was split), the
speed-up over 1 worker, and whether the datasets are identical (same ids, statuses, reasons and alphas).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import splitmerge as sm
from splitmerge.data import build, read_manifest
from splitmerge.video.io import read_matte

RUNS = (("local, 1 worker", "local", 1), ("local, 2 workers", "local", 2), ("ray (local), 2 CPUs", "ray", 2))


def fingerprint(folder: Path) -> tuple:
    rows = read_manifest(folder)
    keys = tuple(sorted((row["id"], row["status"], row["reason"]) for row in rows))
    alphas = [read_matte(folder / row["clip"] / "alpha.mkv", raw=True) for row in rows if row["status"] == "ok"]
    return keys, tuple(a.tobytes() for a in alphas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-clips", type=int, default=3)
    parser.add_argument("--out", default="bench_out/build")
    args = parser.parse_args()
    out = Path(args.out)
    sources = [str(sm.sample_path(name)) for name in ("bikes", "carphone", "bigbuckbunny")]
    results, prints = [], []
    for label, engine, workers in RUNS:
        folder = out / label.split(",")[0].split(" ")[0] / str(workers)
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        summary = build(sources, folder, max_clips=args.max_clips, engine=engine, workers=workers)
        seconds = time.perf_counter() - started
        clips = summary["rows"]
        results.append({"run": label, "seconds": seconds, "clips": clips, "ok": summary["ok"],
                        "clips_per_minute": 60 * clips / seconds})
        prints.append(fingerprint(folder))
        print(f"{label:<22} {clips} clips ({summary['ok']} ok) in {seconds:.1f} s: "
              f"{60 * clips / seconds:.1f} clips/min", flush=True)
    base = results[0]["clips_per_minute"]
    same = all(p == prints[0] for p in prints)
    (out / "results.json").write_text(json.dumps({"runs": results, "identical": same}, indent=2) + "\n")
    print("\n| engine (49 frames, 240x360) | clips/min | speed-up | wall time (s) |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['run']} | {row['clips_per_minute']:.1f} | x{row['clips_per_minute'] / base:.2f} | "
              f"{row['seconds']:.1f} |")
    print(f"datasets identical across engines: {same}")


if __name__ == "__main__":
    main()
