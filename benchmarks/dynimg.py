"""Throughput of `mertool dynimg` (clips/s) at 224 x 224.

Builds a temporary aligned.h5 of N clips of T frames (the astronaut face with a small
mouth-corner deformation rising to the apex and falling back), then times

- the library alone (``phase_dynamic_images`` on an in-memory clip), and
- the whole stage (``mertool.stages.dynimg.run_dynimg``: streaming read through
  ``StageFile.iter_frames``, both phase images, resize, normalisation, shard + final file).

Usage: python benchmarks/dynimg.py [--clips 16] [--frames 64] [--size 224] [--jobs 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from mertool.stages.stagefile import StageWriter
from mertool.preprocess.dynimg import phase_dynamic_images
from mertool.stages.dynimg import DynimgConfig, run_dynimg


def make_clip(T: int, size: int) -> np.ndarray:
    face = cv2.resize(data.astronaut()[40:220, 130:310], (size, size), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    bump = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 20) ** 2))
               for cy, cx in ((0.58 * size, 0.42 * size), (0.58 * size, 0.64 * size)))
    apex = T // 2
    amount = [3.0 * (t / apex if t <= apex else (T - 1 - t) / (T - 1 - apex)) for t in range(T)]
    return np.stack([cv2.remap(face, xx, yy + a * bump, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                     for a in amount])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    T, S = args.frames, args.size
    clip = make_clip(T, S)
    apex = T // 2 + 1

    reps = 5
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        phase_dynamic_images(clip, 1, apex, T)
    lib = reps / (time.perf_counter() - t0)
    lib_cpu = reps / (time.process_time() - c0)

    with tempfile.TemporaryDirectory() as tmp:
        aligned = Path(tmp) / "aligned.h5"
        w = StageWriter(aligned, "aligned", {"frames": "all", "size": S})
        for i in range(args.clips):
            w.add(f"c{i:03d}", {"frames": clip, "frame_numbers": np.arange(1, T + 1)},
                  {"subject": f"s{i % 4}", "label": "happiness", "onset": 1, "apex": apex, "offset": T})
        w.finish([f"c{i:03d}" for i in range(args.clips)], stacked=False)
        t0, c0 = time.perf_counter(), time.process_time()
        run_dynimg(aligned, Path(tmp) / "dynimg.h5", DynimgConfig(size=S), jobs=args.jobs, progress=False)
        stage = args.clips / (time.perf_counter() - t0)
        stage_cpu = args.clips / (time.process_time() - c0)

    # CPU-time rates are per core and hide other load on a shared machine; with jobs > 1 the
    # workers' CPU time is not counted, so only the wall-clock stage rate is meaningful there.
    print(f"dynimg {S}x{S}, T={T} frames/clip, 2 phases, linear, minmax, jobs={args.jobs}")
    print(f"  library (in memory):             {lib:6.1f} clips/s wall, {lib_cpu:6.1f} clips/s per CPU-second")
    cpu = f", {stage_cpu:6.1f} clips/s per CPU-second" if args.jobs == 1 else ""
    print(f"  stage (aligned.h5 -> dynimg.h5): {stage:6.1f} clips/s wall{cpu}")


if __name__ == "__main__":
    main()
