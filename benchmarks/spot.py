"""Spotting quality on synthetic long videos, and throughput, of `mertool spot`.

Quality: synthetic long-video sets (:mod:`mertool.synth_long`, default generator settings:
4 subjects x 2 videos of 8 s, 3 micro- (0.2-0.45 s, 1-2.5 px) and 1 macro-expression
(0.8-2 s, 3-6 px) per video, blinks, head drift, jitter, idle motion, noise) at 200 and 30
fps, for seeds other than the one the defaults were tuned on (0); `mertool spot` with its
defaults (only --fps given) and `--evaluate` against the true intervals; the classic LBP
method (`--method lbp`) for comparison.

Throughput: the feature-difference method on 224 x 224 aligned grey frames in memory
(per-frame features + curves + detection), and the whole stage (JPEG read, alignment,
features, detection, files) on the 200 fps set, as video frames per second.

Usage: python benchmarks/spot.py [--seeds 1,2] [--quick] [--jobs 2] [--out spot.md] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _emit import emit  # benchmarks/ is sys.path[0] when a script here runs
from mertool.preprocess import spotting
from mertool.stages.index import run_index
from mertool.stages.spot import SpotConfig, evaluate_spots, run_spot
from mertool.synth_long import LongSynthConfig, generate_long


def quality(work: Path, seeds: list[int], size: dict, jobs: int) -> list[str]:
    """Markdown rows: per fps, seed and method, micro / macro / all scores."""
    rows = []
    for fps in (200.0, 30.0):
        totals: dict[str, np.ndarray] = {}
        for seed in seeds:
            data = work / f"data_{fps:g}_{seed}"
            manifest = generate_long(data, LongSynthConfig(fps=fps, seed=seed, **size), jobs=jobs, progress=False)
            long_csv = work / f"long_{fps:g}_{seed}.csv"
            run_index("manifest", long_csv, sheet=manifest)
            for method in ("flow", "lbp"):
                out = work / f"spots_{fps:g}_{seed}_{method}.csv"
                run_spot(long_csv, out, SpotConfig(fps=fps, method=method), jobs=jobs, progress=False)
                result = evaluate_spots(out, long_csv)
                for kind in ("micro", "macro", "all"):
                    r = result.row(kind)
                    key = f"{method} {kind}"
                    totals[key] = totals.get(key, np.zeros(3, int)) + [r["tp"], r["fp"], r["fn"]]
                    rows.append(f"| {fps:g} | {seed} | {method} | {kind} | {r['tp']} | {r['fp']} | {r['fn']} | "
                                f"{r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** |")
        for key, (tp, fp, fn) in totals.items():
            c = spotting.Counts(int(tp), int(fp), int(fn))
            method, kind = key.split()
            rows.append(f"| {fps:g} | all seeds | {method} | {kind} | {tp} | {fp} | {fn} | {c.precision:.3f} | "
                        f"{c.recall:.3f} | **{c.f1:.3f}** |")
    return rows


def aligned_frames(n: int, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grey frames of a real face aligned as the stage aligns it (size x size), drifting
    and with a moving mouth, in memory; and the aligned landmarks."""
    from skimage import data

    from mertool.preprocess.align import align_clip

    first = align_clip([data.astronaut()], size=size, margin=0.1, detector="hog", upsample=1, interpolation="linear")
    face = cv2.cvtColor(first["frames"][0], cv2.COLOR_RGB2GRAY)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for t in range(n):
        dx, dy = np.float32(1.5 * np.sin(t / 40)), np.float32(1.0 * np.cos(t / 55))
        mouth = np.float32(0.8 * np.sin(t / 7)) * (yy > 0.6 * size)
        out.append(cv2.remap(face, xx - dx, yy - dy + mouth, cv2.INTER_LINEAR))
    return np.stack(out), first["landmarks"]


def method_throughput(n: int = 800) -> list[str]:
    """Markdown rows: frames/s of features + curves + detection on in-memory aligned frames."""
    gray, landmarks = aligned_frames(n)
    blocks = spotting.region_blocks(landmarks, gray.shape[1:])
    rows = []
    for method in ("flow", "lbp"):
        t0, c0 = time.perf_counter(), time.process_time()
        feats = [spotting.flow_features(gray[i : i + 128], blocks, gray[i - 1] if i else None) if method == "flow"
                 else spotting.lbp_features(gray[i : i + 128], blocks) for i in range(0, n, 128)]
        spotting.spot(np.concatenate(feats), fps=50.0, method=method, micro_window=0.15, macro_window=0.6, z=3.0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        box = f"{blocks[:, 1].max() - blocks[:, 0].min()} x {blocks[:, 3].max() - blocks[:, 2].min()}"
        rows.append(f"| {method}: features + curves + detection, 1 process ({len(blocks)} blocks over {box} px) "
                    f"| {n / wall:.0f} | {n / cpu:.0f} |")
    return rows


def stage_throughput(work: Path, seed: int, size: dict, jobs: int) -> list[str]:
    """Markdown rows: video frames per second through the whole stage on the 200 fps set."""
    long_csv = work / f"long_200_{seed}.csv"
    frames = sum(len(list(p.glob("*.jpg"))) for p in (work / f"data_200_{seed}").glob("sub*/sub*_v*"))
    rows = []
    for rate, label in ((50.0, "default: every 4th frame analysed (50 Hz)"), (200.0, "--rate 200: every frame analysed")):
        out = work / f"speed_{rate:g}.csv"
        t0 = time.perf_counter()
        run_spot(long_csv, out, SpotConfig(fps=200.0, rate=rate), jobs=jobs, overwrite=True, progress=False)
        wall = time.perf_counter() - t0
        analysed = frames * rate / 200.0
        rows.append(f"| stage, --jobs {jobs}, {label} | {frames / wall:.0f} video frames/s ({frames / wall / 200:.1f}x real time) "
                    f"| {analysed / wall:.0f} analysed 224 x 224 frames/s |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2", help="generator seeds (the defaults were tuned on seed 0)")
    ap.add_argument("--quick", action="store_true", help="2 subjects x 1 video of 6 s per seed and rate")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the generated sets here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    size = {"subjects": 2, "videos": 1, "seconds": 6.0} if args.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                 f"load average {os.getloadavg()[0]:.1f} at start", "",
                 "| fps | seed | method | type | TP | FP | FN | precision | recall | F1 |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += quality(work, seeds, size, args.jobs)
        lines += ["", "| what | frames/s (wall) | frames/s per CPU-second |", "|---|---|---|", *method_throughput()]
        lines += ["", "| what | video frames/s (wall) | analysed frames/s |", "|---|---|---|", *stage_throughput(work, seeds[0], size, args.jobs)]
        lines.append(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
