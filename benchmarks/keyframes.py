"""Apex-spotting error of `mertool keyframes` on built-in clips with a known apex.

Sets (:mod:`mertool.synth`, real faces with head jitter, blinks, flicker and noise):

- ``built-in``: the demo's set (``SynthConfig()``: 12 subjects x 4 clips x 3 classes, seed
  0, apex at 35-60 % of onset..offset, where the ``midpoint`` baseline is strong by
  construction);
- ``early`` and ``late``: the same generator with the apex at 20-30 % and 70-80 % of
  onset..offset (seeds 1 and 2), where the midpoint is 5-7 frames off.

Each set goes through the same chain as the demo (index -> align every frame at
``--size`` px -> keyframes --evaluate: every method against the generator's apex).

Usage: python benchmarks/keyframes.py [--size 112] [--subjects 12] [--quick] [--jobs 2] [--out kf.md] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from _emit import emit  # benchmarks/ is sys.path[0] when a script here runs
from mertool.samples import read_samples
from mertool.stages.align import AlignConfig, run_align
from mertool.stages.index import run_index
from mertool.stages.keyframes import evaluate_apex
from mertool.synth import SynthConfig, generate

SETS = {"built-in": ((0.35, 0.6), 0), "early": ((0.2, 0.3), 1), "late": ((0.7, 0.8), 2)}
WITHIN = 2


def evaluate_set(work: Path, name: str, cfg: SynthConfig, size: int, jobs: int) -> list[str]:
    """Markdown rows (set, method, clips, mean, median, share within 2 frames) of one set."""
    folder = work / name
    manifest = generate(folder / "data", cfg, jobs=jobs, progress=False)
    samples = folder / "samples.csv"
    run_index("manifest", samples, sheet=manifest)
    aligned = folder / f"aligned{size}.h5"
    run_align(samples, aligned, AlignConfig(size=size, frames="all"), jobs=jobs, progress=False)
    rows = []
    for result in evaluate_apex(read_samples(samples), aligned):
        s = result.summary(WITHIN)
        rows.append(f"| {name} | {result.method} | {s['n']} | {s['mean']:.2f} | {s['median']:.1f} | {100 * s['within']:.0f} % |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112, help="aligned frame size (the demo's flow models: 112)")
    ap.add_argument("--subjects", type=int, default=12, help="subjects per set (4 clips per class each)")
    ap.add_argument("--quick", action="store_true", help="3 subjects x 1 clip per class per set")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the generated sets here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = ap.parse_args()
    subjects, per_class = (3, 1) if args.quick else (args.subjects, 4)
    start = time.time()
    lines = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load average {os.getloadavg()[0]:.1f} at start; aligned at {args.size} px", "",
             f"| set | method | clips | mean error (frames) | median | within {WITHIN} frames |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, (apex_at, seed) in SETS.items():
            cfg = SynthConfig(subjects=subjects, per_class=per_class, apex_at=apex_at, seed=seed)
            lines += evaluate_set(work, name, cfg, args.size, args.jobs)
    lines.append(f"\n{time.time() - start:.0f} s, load average {os.getloadavg()[0]:.1f} at the end")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
