"""The flow stage on a dask LocalCluster vs local worker processes, side by side in one run.

Makes an aligned.h5 of ``--clips`` synthetic clips (mertool.synth's subjects, real faces
with a known motion, rendered at 112 x 112, ``--frames`` frames each, written as `mertool
align` writes them), then times ``run_flow`` (OpenCV TV-L1, onset -> apex, 112 x 112) to a
finished flow.h5 three ways:

* ``--jobs W``: W loky worker processes (one thread each), as without ``--scheduler``;
* ``local:W``: ``MERTOOL_SCHEDULER=local:W`` (a LocalCluster of W single-threaded workers
  started and closed inside the call, as ``mertool --scheduler local:W`` does);
* ``running``: a LocalCluster of W workers started beforehand, reached by its address
  (as with ``dask scheduler`` + ``dask worker``: no start-up in the timed call).

Every run writes the same file (the content keys are checked equal). ``--repeats R`` runs
R rounds, each way once per round in rotating order (fairer on a machine whose load
changes), and reports medians. ``--scale 1,2,4`` adds rows for a running cluster of each
size (throughput with workers).

    python benchmarks/cluster.py                    # 450 clips, 2 workers (the README table)
    python benchmarks/cluster.py --clips 40         # a quick look
    python benchmarks/cluster.py --scale 1,2,4,8,16 # on a many-core host
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import mertool  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mertool import cluster  # noqa: E402
from mertool.stages.flow import FlowConfig, run_flow  # noqa: E402
from mertool.stages.stagefile import StageWriter, open_stage  # noqa: E402
from mertool.synth import SynthConfig, make_subject, render_clip  # noqa: E402


def make_aligned(path: Path, clips: int, frames: int, size: int) -> Path:
    """An aligned.h5 of ``clips`` synthetic clips (10 subjects, three classes)."""
    cfg = SynthConfig(size=size, frames=frames, subjects=10)
    subjects = [make_subject(i, cfg) for i in range(cfg.subjects)]
    writer = StageWriter(path, "aligned", {"benchmark": "cluster", "clips": clips, "frames": frames, "size": size})
    ids = []
    for i in range(clips):
        subject, label = subjects[i % len(subjects)], cfg.classes[i % len(cfg.classes)]
        clip = render_clip(subject, label, i, cfg)
        sid = f"{subject.name}_{i:04d}"
        arrays = {
            "frames": clip.frames,
            "frame_numbers": np.arange(1, frames + 1, dtype=np.int64),
            "landmarks": subject.landmarks.astype(np.float32),
            "transform": np.eye(2, 3),
        }
        meta = {"subject": subject.name, "label": label, "dataset": "synth", "clip": sid, "onset": clip.onset,
                "apex": clip.apex, "offset": clip.offset, "aus": clip.aus, "apex_source": "sheet"}
        writer.add(sid, arrays, meta)
        ids.append(sid)
    return writer.finish(ids, stacked=False)


def timed(aligned: Path, out: Path, jobs: int, scheduler: str | None) -> tuple[float, str]:
    """Seconds for one flow run to a finished file, and the file's content key."""
    if scheduler is None:
        os.environ.pop(cluster.SCHEDULER_ENV, None)
    else:
        os.environ[cluster.SCHEDULER_ENV] = scheduler
    try:
        start = time.perf_counter()
        run_flow(aligned, out, FlowConfig.resolve(size=112), jobs=jobs, progress=False)
        return time.perf_counter() - start, open_stage(out).key
    finally:
        os.environ.pop(cluster.SCHEDULER_ENV, None)


def running_cluster(workers: int):
    import distributed

    return distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    )


def modes(workers: int) -> list[tuple[str, int, str | None]]:
    """(row name, jobs, scheduler: None = local processes, "running" = a cluster started beforehand)."""
    return [
        (f"`--jobs {workers}` (loky)", workers, None),
        (f"`--scheduler local:{workers}` (cluster started in the call)", 1, f"local:{workers}"),
        (f"running LocalCluster, {workers} workers (address)", 1, "running"),
    ]


def run_mode(aligned: Path, out: Path, jobs: int, scheduler: str | None, workers: int) -> tuple[float, str]:
    if scheduler != "running":
        return timed(aligned, out, jobs, scheduler)
    with running_cluster(workers) as lc:
        return timed(aligned, out, jobs, lc.scheduler_address)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=450)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="rounds; each round runs every way once, in rotating order")
    ap.add_argument("--scale", default="", help="comma-separated worker counts for a throughput table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        aligned = make_aligned(work / "aligned.h5", args.clips, args.frames, 112)
        print(f"# {args.clips} clips of {args.frames} frames at 112 x 112 made in {time.perf_counter() - t0:.1f} s; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)
        ways, times, keys = modes(args.workers), {}, set()
        for r in range(args.repeats):
            for name, jobs, scheduler in ways[r % len(ways):] + ways[: r % len(ways)]:
                out = work / f"flow_{r}_{len(keys)}_{jobs}.h5"
                secs, key = run_mode(aligned, out, jobs, scheduler, args.workers)
                out.unlink()
                times.setdefault(name, []).append(secs)
                keys.add(key)
                print(f"# round {r + 1}: {name}: {secs:.1f} s", flush=True)
        base = float(np.median(times[ways[0][0]]))
        print(f"\n| how | wall s (median of {args.repeats}) | clips/s | vs `--jobs {args.workers}` |\n|---|---:|---:|---:|")
        for name, _, _ in ways:
            secs = float(np.median(times[name]))
            print(f"| {name} | {secs:.1f} | {args.clips / secs:.1f} | {secs / base:.2f} |")
        print(f"\ncontent keys equal: {len(keys) == 1}")
        scale = [int(n) for n in args.scale.split(",") if n]
        if scale:
            print("\n| workers | wall s | clips/s |\n|---:|---:|---:|")
            for n in scale:
                secs, _ = run_mode(aligned, work / f"scale{n}.h5", 1, "running", n)
                print(f"| {n} | {secs:.1f} | {args.clips / secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
