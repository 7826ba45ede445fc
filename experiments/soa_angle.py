"""Does SOA find the motion axis? Train ``soa-shared`` briefly on synthetic pairs.

Each synthetic onset/apex pair is a random smooth texture (a different "identity" per
sample). In the apex frame a band of the image moves by a small amount (default 1.5 px)
*along* a chosen axis ``phi`` (image coordinates, x right, y down; 90 = vertical), the
band lying across that axis. The class says *where along the axis* the band sits (three
positions), so the label is a function of the position along ``phi`` only: pooling along
lines orthogonal to ``phi`` (SOA with theta = phi) keeps it, the orthogonal direction
mixes it away. The model is FaceSleuth ``small`` with SOA (one shared angle), no FPF,
no AU and the papers' flatten head (``--head pooled`` for the compact one). Both axes
start from the same angle (default 60 deg, 30 deg from either target) and the learned
angle is reported, whatever it is.

Usage::

    python experiments/soa_angle.py                       # phi = 90 and 30 (CPU: minutes)
    python experiments/soa_angle.py --axes 90 30 0 --steps 400 --out runs/soa_angle
    python experiments/soa_angle.py --device cuda --size 224 --steps 1000

Writes ``OUT/soa_angle.json`` (per axis: init, final angle, accuracy, angle trace) and
``OUT/soa_angle.png`` (angle vs step).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mertool.models.facesleuth import FaceSleuth

BAND_POSITIONS = (-0.25, 0.0, 0.25)  # along the axis, as a fraction of the image side


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random smooth RGB texture (uint8-range float), one per sample."""
    img = np.zeros((size, size, 3), np.float32)
    for scale, weight in ((4, 60.0), (8, 40.0), (16, 25.0)):
        small = rng.normal(0, 1, (scale, scale, 3)).astype(np.float32)
        img += weight * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img + 128, 0, 255)


def make_pair(rng: np.random.Generator, size: int, phi_deg: float, label: int, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Onset and apex (3 x S x S float) with a band at BAND_POSITIONS[label] moving along phi."""
    onset = texture(rng, size)
    phi = math.radians(phi_deg)
    d = np.array([math.cos(phi), math.sin(phi)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    proj = (xx - c) * d[0] + (yy - c) * d[1]  # position along the axis
    centre = BAND_POSITIONS[label] * size + rng.uniform(-0.03, 0.03) * size
    width = 0.09 * size
    band = np.exp(-0.5 * ((proj - centre) / width) ** 2).astype(np.float32)
    amp = amplitude * rng.uniform(0.7, 1.3) * rng.choice([-1, 1])
    mx = (xx - amp * band * d[0]).astype(np.float32)
    my = (yy - amp * band * d[1]).astype(np.float32)
    apex = cv2.remap(onset, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    noise = rng.normal(0, 1.0, (2, size, size, 3)).astype(np.float32)
    return (np.clip(onset + noise[0], 0, 255).transpose(2, 0, 1), np.clip(apex + noise[1], 0, 255).transpose(2, 0, 1))


def make_set(n: int, size: int, phi: float, amplitude: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(BAND_POSITIONS)
    pairs = [make_pair(rng, size, phi, int(k), amplitude) for k in labels]
    onset = torch.from_numpy(np.stack([p[0] for p in pairs]))
    apex = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return onset, apex, torch.from_numpy(labels).long()


def run_axis(phi: float, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    onset, apex, y = make_set(args.samples, args.size, phi, args.amplitude, args.seed)
    t_on, t_ap, t_y = make_set(args.samples // 2, args.size, phi, args.amplitude, args.seed + 1000)
    model = FaceSleuth(
        len(BAND_POSITIONS), attention="soa", theta="shared", theta_init=args.init, fpf="none", use_au=False,
        head=args.head, preset="small", img_size=args.size, theta_lr_scale=args.theta_lr_scale,
    ).to(device)
    opt = torch.optim.AdamW(model.param_groups(args.lr, args.weight_decay))
    gen = torch.Generator().manual_seed(args.seed)
    trace = [model.angles()[0]]
    start = time.perf_counter()
    for step in range(args.steps):
        model.train()
        idx = torch.randint(0, len(y), (args.batch,), generator=gen)
        logits = model(onset[idx].to(device), apex[idx].to(device))
        loss = F.cross_entropy(logits, y[idx].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        trace.append(model.angles()[0])
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(t_on[i:i + 64].to(device), t_ap[i:i + 64].to(device)).argmax(1).cpu()
                          for i in range(0, len(t_y), 64)])
    return {
        "axis_deg": phi,
        "init_deg": args.init,
        "final_deg": trace[-1],
        "distance_to_axis_deg": min(abs(trace[-1] - phi % 180), 180 - abs(trace[-1] - phi % 180)),
        "test_accuracy": float((pred == t_y).float().mean()),
        "seconds": time.perf_counter() - start,
        "trace_deg": trace,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--axes", type=float, nargs="+", default=[90.0, 30.0], help="Motion axes to test (degrees).")
    p.add_argument("--init", type=float, default=60.0, help="Initial SOA angle (degrees).")
    p.add_argument("--steps", type=int, default=200, help="Optimizer steps per axis.")
    p.add_argument("--head", default="flatten", choices=["flatten", "pooled"], help="Classifier head.")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--samples", type=int, default=240, help="Training pairs per axis (half as many for testing).")
    p.add_argument("--size", type=int, default=64, help="Frame side (multiple of 16).")
    p.add_argument("--amplitude", type=float, default=1.5, help="Band displacement in pixels.")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--theta-lr-scale", type=float, default=10.0, help="Angle lr = lr x this (no weight decay).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/soa_angle"))
    args = p.parse_args(argv)
    results = [run_axis(phi, args) for phi in args.axes]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "results": results}
    (args.out / "soa_angle.json").write_text(json.dumps(summary, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        line = ax.plot(r["trace_deg"], label=f"motion axis {r['axis_deg']:.0f} deg")[0]
        ax.axhline(r["axis_deg"] % 180, ls=":", color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("learned SOA angle (deg)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "soa_angle.png", dpi=100)
    plt.close(fig)
    print("| motion axis | init | learned angle | |learned - axis| | test acc | seconds |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['axis_deg']:.0f} | {r['init_deg']:.0f} | {r['final_deg']:.1f} | {r['distance_to_axis_deg']:.1f} "
              f"| {r['test_accuracy']:.3f} | {r['seconds']:.0f} |")
    return summary


if __name__ == "__main__":
    main()
