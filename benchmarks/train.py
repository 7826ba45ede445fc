"""Training speed of every registered model: samples/s and LOSO wall time.

For each model, on random inputs of its declared shape:

* ``train samples/s``: optimizer steps at the model's default batch size (forward,
  backward, step), after a warm-up;
* ``eval samples/s``: inference in eval mode;
* ``LOSO``: a real ``train_run`` (the engine, run directory and all) over a synthetic
  stage file of ``--subjects`` x ``--per-subject`` samples for ``--epochs`` epochs,
  once per ``--jobs`` value (parallel fold workers), and the wall time extrapolated to the
  model's default epoch budget.

Usage::

    python benchmarks/train.py                       # all models, CPU
    python benchmarks/train.py --models offtanet --subjects 49 --per-subject 6 --jobs 1 2
    python benchmarks/train.py --device cuda         # GPU (AMP on)
    python benchmarks/train.py --layouts --steps 10  # NCHW vs channels-last training, flow models
    python benchmarks/train.py --fold-parallel       # sequential vs stacked folds (x seeds), flow models
    python benchmarks/train.py --conv-forms          # R convolutions apart vs grouped vs batched matmul
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mertool.stages.stagefile import StageWriter
from mertool.models import count_parameters, create_model, get_entry, list_models
from mertool.models.flops import count_flops, example_inputs
from mertool.device import resolve_device
from mertool.train.config import GLOBAL_DEFAULTS, TrainConfig
from mertool.train.fold import FoldTrainer
from mertool.train.config import resolve_recipe
from mertool.train.devices import channels_last_for
from mertool.train.loso import make_folds
from mertool.train.run import train_run
from mertool.train.stacked import Replica, StackedTrainer

#: The real protocols' sizes (subjects, samples): Off-TANet's 3-class composite LOSO, and the
#: 442-sample composite set STSTNet / Off-ApexNet are scored on.
PROTOCOLS = {"offtanet": (49, 294), "ststnet": (68, 442), "offapexnet": (68, 442)}


def _random_batch(spec, n: int, device, channels_last: bool) -> dict[str, torch.Tensor]:
    batch = {}
    for name, shape in spec.arrays.items():
        x = torch.randn(n, *shape, device=device)
        batch[name] = x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x
    for field in spec.meta:
        batch[field] = (torch.rand(n, 21, device=device) < 0.2).float()
    return batch


def step_speed(name: str, device: torch.device, steps: int, channels_last: bool = True, evaluate: bool = True) -> dict:
    """Train (and, with ``evaluate``, eval) samples/s of one model at its default batch size."""
    entry = get_entry(name)
    bs = int(entry.defaults.get("batch_size", GLOBAL_DEFAULTS["batch_size"]))
    model = create_model(name, num_classes=3).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = _random_batch(entry.input, bs, device, channels_last)
    y = torch.randint(0, 3, (bs,), device=device)
    amp = device.type == "cuda"

    def train_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(**batch)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        _sync(device)

    model.train()
    train_step()
    sync()
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        train_step()
    sync()
    train_sps = bs * steps / (time.perf_counter() - t)
    train_cpu = bs * steps / max(time.process_time() - cpu, 1e-9)  # per CPU-second (all threads)
    out = {"batch": bs, "params": count_parameters(model), "train_sps": train_sps, "train_cpu": train_cpu}
    if not evaluate:
        return out
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        model(**batch)
        sync()
        t = time.perf_counter()
        for _ in range(steps):
            model(**batch)
        sync()
    return {**out, "eval_sps": bs * steps / (time.perf_counter() - t)}


def synthetic_stage(path: Path, name: str, subjects: int, per_subject: int, seed: int = 0) -> Path:
    """A stage file of the model's input kind with random inputs and 3 balanced classes."""
    spec = get_entry(name).input
    rng = np.random.default_rng(seed)
    w = StageWriter(path, spec.stage, {"benchmark": name, "subjects": subjects, "per_subject": per_subject})
    ids = []
    for i in range(subjects * per_subject):
        sid = f"b{i:05d}"
        arrays = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in spec.arrays.items()}
        meta = {"label": ["negative", "positive", "surprise"][i % 3], "subject": f"sub{i // per_subject + 1:02d}"}
        if "aus" in spec.meta:
            meta["aus"] = "4+12"
        w.add(sid, arrays, meta)
        ids.append(sid)
    return w.finish(ids, stacked=True)


def loso_time(name: str, features: Path, epochs: int, jobs: int, device: str, workdir: Path) -> tuple[float, float]:
    """Wall seconds of a whole run, and the folds' own seconds (summed) per worker."""
    cfg = TrainConfig(model=name, epochs=epochs, jobs=jobs, device=device, checkpoint_every=10**6)
    out = workdir / f"run_{name}_{jobs}"
    t = time.perf_counter()
    result = train_run(features, out, cfg, overwrite=True, progress=False)
    return time.perf_counter() - t, result.metrics["train_seconds"] / jobs


def fold_parallel(name: str, device: torch.device, epochs: int, folds_timed: int, seeds: int) -> dict:
    """Wall seconds of (a) the sequential engine, (b) stacked folds, (c) stacked folds x ``seeds``.

    Random inputs at the size of the model's real protocol (:data:`PROTOCOLS`), subjects of
    near-equal size; the first ``folds_timed`` LOSO folds (0 = all), ``epochs`` epochs each.
    Returns training samples/s (fold-epochs x training samples per wall second) of each.
    """
    n_subj, n = PROTOCOLS[name]
    shape = get_entry(name).input.arrays["flow"]
    gen = torch.Generator().manual_seed(0)
    X = {"flow": torch.randn(n, *shape, generator=gen).to(device)}
    y = np.arange(n) % 3
    subjects = [f"s{i * n_subj // n:02d}" for i in range(n)]
    cfg = resolve_recipe(TrainConfig(model=name, epochs=epochs, device=str(device)))
    folds = make_folds(subjects, "loso", 5, [], 0.0, 0)
    folds = folds[: folds_timed or len(folds)]
    work = sum(len(f.train) for f in folds) * epochs
    warm = dataclasses.replace(cfg, epochs=1)  # one-off costs (kernel set-up, first allocations) outside the timing
    FoldTrainer(X, y, folds[0], 0, warm, 3, device).run()
    StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds[:2])], warm, 3, device).run()
    _sync(device)

    t = time.perf_counter()
    for i, f in enumerate(folds):
        FoldTrainer(X, y, f, i, cfg, 3, device).run()
    seq = time.perf_counter() - t
    t = time.perf_counter()
    StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds)], cfg, 3, device).run()
    stacked = time.perf_counter() - t
    t = time.perf_counter()
    reps = [Replica(f, i, s) for s in range(seeds) for i, f in enumerate(folds)]
    StackedTrainer(X, y, reps, cfg, 3, device).run()
    stacked_seeds = time.perf_counter() - t
    return {"folds": len(folds), "train_samples": work, "seq": seq, "stacked": stacked, "seeds": stacked_seeds}


def layout_speeds(name: str, device: torch.device, steps: int, repeats: int, threads: list[int]) -> dict:
    """Median train samples/s of ``name`` per (threads, channels-last) over ``repeats`` rounds.

    Each round times every thread count and both layouts back to back (:func:`step_speed`,
    training steps only), so load from other jobs hits all of them alike.
    """
    runs: dict[tuple[int, bool], list[float]] = {(t, cl): [] for t in threads for cl in (False, True)}
    for _ in range(repeats):
        for t, cl in runs:
            torch.set_num_threads(t)
            runs[t, cl].append(step_speed(name, device, steps, channels_last=cl, evaluate=False)["train_sps"])
    return {key: float(np.median(v)) for key, v in runs.items()}


def layout_table(names: list[str], device: torch.device, steps: int, repeats: int, threads: list[int]) -> int:
    """Print the memory-layout table: NCHW vs channels-last training samples/s, and what ``auto`` picks."""
    print(f"# torch {torch.__version__}, device {device}, {os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}; median of {repeats} x {steps} steps")
    head = "".join(f" {t} thr: NCHW | {t} thr: channels-last | {t} thr: CL / NCHW |" for t in threads)
    print(f"| model | input | batch |{head} auto on {device.type} |")
    print("|---" * (4 + 3 * len(threads)) + "|")
    for name in names:
        entry = get_entry(name)
        r = layout_speeds(name, device, steps, repeats, threads)
        cells = [name, " + ".join("x".join(map(str, s)) for s in entry.input.arrays.values()),
                 str(entry.defaults.get("batch_size", GLOBAL_DEFAULTS["batch_size"]))]
        for t in threads:
            cells += [f"{r[t, False]:.1f}", f"{r[t, True]:.1f}", f"{r[t, True] / r[t, False]:.2f}"]
        auto = channels_last_for("auto", name, device)
        print("| " + " | ".join([*cells, "channels-last" if auto else "NCHW"]) + " |", flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=None, help="models to time (default: all registered)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per model")
    ap.add_argument("--subjects", type=int, default=6, help="subjects in the synthetic LOSO set (0 = skip LOSO)")
    ap.add_argument("--per-subject", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the timed LOSO run")
    ap.add_argument("--jobs", type=int, nargs="*", default=[1, 2], help="fold-worker counts to time (CPU)")
    ap.add_argument("--no-channels-last", action="store_true", help="time NCHW instead of channels-last")
    ap.add_argument("--fold-parallel", action="store_true",
                    help="only the fold-parallel section: sequential vs stacked folds vs stacked x --seeds")
    ap.add_argument("--folds", type=int, default=0, help="fold-parallel: time the first N folds (0 = all)")
    ap.add_argument("--seeds", type=int, default=5, help="fold-parallel: seeds in the stacked x seeds run")
    ap.add_argument("--conv-forms", action="store_true",
                    help="only the convolution-forms section: R convolutions apart vs grouped vs batched matmul")
    ap.add_argument("--replicas", type=int, default=8, help="conv forms: replicas (R)")
    ap.add_argument("--layouts", action="store_true",
                    help="only the memory-layout section: train samples/s in NCHW vs channels-last per thread count")
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="layouts: torch thread counts to time")
    ap.add_argument("--repeats", type=int, default=3, help="layouts: rounds to take the median over")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    if args.layouts:
        flow = [n for n in list_models() if get_entry(n).input.stage == "flow"]
        return layout_table(args.models or flow, device, args.steps, args.repeats, args.threads)
    if args.conv_forms:
        return conv_forms_table(device, args.replicas)
    if args.fold_parallel:
        return fold_parallel_table(args.models or list(PROTOCOLS), device, args.epochs, args.folds, args.seeds)
    names = args.models or list_models()
    print(f"# torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {os.cpu_count()} CPU cores, "
             f"{torch.get_num_threads()} threads"))
    print("| model | params | batch | train samples/s | train samples per CPU-s | eval samples/s |"
          + ("".join(f" LOSO {args.subjects}x{args.per_subject}, {args.epochs} ep, jobs {j}: wall (folds) s |"
                     for j in (args.jobs if device.type == "cpu" else [1])) if args.subjects else "")
          + (" est. LOSO 49 subj / 294 samples at default epochs (min) |" if args.subjects else ""))
    print("|---" * (6 + (len(args.jobs if device.type == "cpu" else [1]) + 1 if args.subjects else 0)) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            s = step_speed(name, device, args.steps, channels_last=not args.no_channels_last)
            cells = [name, f"{s['params']:,}", str(s["batch"]), f"{s['train_sps']:.1f}", f"{s['train_cpu']:.1f}",
                     f"{s['eval_sps']:.1f}"]
            if args.subjects:
                feats = synthetic_stage(Path(tmp) / f"{name}.h5", name, args.subjects, args.per_subject)
                times = [loso_time(name, feats, args.epochs, j, str(device), Path(tmp))
                         for j in (args.jobs if device.type == "cpu" else [1])]
                cells += [f"{wall:.1f} ({folds:.1f})" for wall, folds in times]
                # fold throughput (folds x training samples x epochs per fold-second, without the
                # run's one-off imports and plots), scaled to the 49-subject, 294-sample
                # Off-TANet protocol at the model's default epochs
                n = args.subjects * args.per_subject
                done = args.subjects * (n - args.per_subject) * args.epochs
                rate = done / min(folds for _, folds in times)
                default_epochs = int(get_entry(name).defaults.get("epochs", GLOBAL_DEFAULTS["epochs"]))
                cells.append(f"{49 * 288 * default_epochs / rate / 60:.0f} ({default_epochs} ep)")
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device: torch.device, repeats: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_rate(device: torch.device) -> float:
    """The device's measured fp32 matrix-multiply rate, FLOP/s (square products, median of 5)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    return 2 * n**3 / _median_seconds(lambda: a @ b, device)


def train_flops(name: str) -> float:
    """FLOPs of one training sample: 3 x the forward pass (the backward pass costs about twice the forward)."""
    entry = get_entry(name)
    return 3 * count_flops(create_model(name, num_classes=3), example_inputs(entry.input, batch=2), "flops").total


def fold_parallel_table(names: list[str], device: torch.device, epochs: int, folds: int, seeds: int) -> int:
    """Print the fold-parallel table (one row per model), with the share of the measured matmul rate reached."""
    rate = matmul_rate(device)
    print(f"# torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}, fp32 matmul {rate / 1e9:.0f} GFLOP/s")
    print(f"| model | protocol (subjects, samples) | folds timed x epochs | sequential: s (samples/s) "
          f"| stacked folds: s (samples/s) | stacked x {seeds} seeds: s (samples/s) | speed-up (stacked, per seed) "
          f"| % of matmul rate (sequential, stacked, x seeds) |")
    print("|---" * 8 + "|")
    for name in names:
        r = fold_parallel(name, device, epochs, folds, seeds)
        w, flops = r["train_samples"], train_flops(name)
        sps = [w / r["seq"], w / r["stacked"], seeds * w / r["seeds"]]
        share = ", ".join(f"{100 * x * flops / rate:.1f}" for x in sps)
        print(f"| {name} | {PROTOCOLS[name]} | {r['folds']} x {epochs} | {r['seq']:.1f} ({sps[0]:.0f}) "
              f"| {r['stacked']:.1f} ({sps[1]:.0f}) | {r['seeds']:.1f} ({sps[2]:.0f}) "
              f"| {r['seq'] / r['stacked']:.2f}x, {seeds * r['seq'] / r['seeds']:.2f}x | {share} |", flush=True)
    return 0


#: Convolutions of the flow models (batch, in, out, side): STSTNet's widest branch at 28 px,
#: Off-TANet's stem at 112 px and a residual-block convolution at 56 px.
CONV_SHAPES = {"ststnet branch": (256, 3, 8, 28), "offtanet stem": (64, 3, 8, 112), "offtanet block": (64, 16, 16, 56)}


def conv_forms_table(device: torch.device, replicas: int) -> int:
    """Forward + backward of ``replicas`` 3x3 convolutions three ways: one after another, as one grouped
    convolution (what ``vmap`` over stacked weights runs, and a grouped-convolution K-replica model would),
    and as im2col + one batched matmul (its matmul only, the im2col left out)."""
    print(f"# torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}, {replicas} replicas")
    print("| convolution | batch, in -> out, side | apart ms | grouped ms (speed-up) | batched matmul ms (speed-up) |")
    print("|---" * 5 + "|")
    for label, (b, c, o, side) in CONV_SHAPES.items():
        def leaf(*shape):
            return torch.randn(*shape, device=device, requires_grad=True)

        xs, ws = [leaf(b, c, side, side) for _ in range(replicas)], [leaf(o, c, 3, 3) for _ in range(replicas)]
        xg, wg = leaf(b, replicas * c, side, side), leaf(replicas * o, c, 3, 3)
        xm, wm = leaf(replicas, b * side * side, 9 * c), leaf(replicas, 9 * c, o)

        def apart():
            for x, w in zip(xs, ws):
                F.conv2d(x, w, padding=1).sum().backward()

        times = [_median_seconds(f, device) for f in (
            apart, lambda: F.conv2d(xg, wg, padding=1, groups=replicas).sum().backward(),
            lambda: torch.bmm(xm, wm).sum().backward())]
        print(f"| {label} | {b}, {c} -> {o}, {side} | {1e3 * times[0]:.1f} | "
              + " | ".join(f"{1e3 * t:.1f} ({times[0] / t:.2f}x)" for t in times[1:]) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
