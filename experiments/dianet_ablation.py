"""DIANet ablations: one cross-validated run per row, one table.

Rows (paper Sec. 3.6-3.7 and mertool's switches), each a set of builder kwargs on top of
``dianet`` (full size, 224 px dynamic images) or ``dianet-small`` (64 px, CPU):

    full        EfficientNetV2-S streams, cross-attention, consistency loss, both phases
    resnet18 / convnext / mobilevit      backbone (paper Table 2)
    simple      the paper's "Simple Attention Block" (Table 3)
    concat / sum                         fusion without attention
    nocons      consistency loss off
    onset       DI-Onset only (one stream; paper Table 4's single-phase row)
    shared      one backbone for both phases
    vector      attention over the pooled 512-d vectors (paper-literal) instead of token maps
    exact       full model on dynamic images made with exact rank-pooling weights
                (needs --exact, a dynimg.h5 written with ``--kind exact``)

Usage::

    python experiments/dianet_ablation.py work/casme2/dynimg_linear_224.h5 \\
        --exact work/casme2/dynimg_exact_224.h5 -o runs/dianet_ablation_casme2
    python experiments/dianet_ablation.py work/demo/dynimg_64.h5 --preset small \\
        --epochs 10 --rows full,onset,concat -o runs/dianet_ablation_demo

Runs are resumable (re-run the same command); the table is printed as Markdown and
written to OUT/table.md and OUT/table.csv. Accuracy is pooled over folds (the paper's
metric); UF1/UAR are pooled too. Nothing is chosen on a test fold.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from mertool.errors import MertoolError
from mertool.models.dianet import ABLATIONS
from mertool.train.config import TrainConfig
from mertool.train.run import train_run

ROWS = ["full"] + [r for r in ABLATIONS if r] + ["exact"]


def run_rows(
    dynimg: Path, out: Path, preset: str = "full", rows: list[str] | None = None, exact: Path | None = None,
    epochs: int | None = None, scheme: str = "loso", k: int = 5, device: str = "auto", jobs: int = 1,
    seed: int = 0,
) -> list[dict]:
    """Train every requested row and return one result dict per row."""
    rows = rows or [r for r in ROWS if r != "exact" or exact is not None]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise MertoolError(f"unknown ablation row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    if "exact" in rows and exact is None:
        raise MertoolError("row 'exact' needs --exact DYNIMG_H5 (made with `mertool dynimg --kind exact`)")
    for path in [dynimg] + ([exact] if exact else []):
        if not Path(path).is_file():
            raise MertoolError(f"{path}: dynimg file not found")
    model = "dianet" if preset == "full" else "dianet-small"
    results = []
    for row in rows:
        kwargs = {} if row in ("full", "exact") else dict(ABLATIONS[row])
        features = exact if row == "exact" else dynimg
        cfg = TrainConfig(model=model, model_kwargs=kwargs, epochs=epochs, scheme=scheme, k=k,
                          device=device, jobs=jobs, seed=seed)
        start = time.perf_counter()
        m = train_run(features, out / row, cfg, progress=False).metrics
        results.append({
            "row": row, "switch": ", ".join(f"{a}={b}" for a, b in kwargs.items()) or
            ("dynimg --kind exact" if row == "exact" else "paper defaults"),
            "params": m["params"], "accuracy": m["accuracy"], "uf1": m["uf1"], "uar": m["uar"],
            "folds": m["n_folds"], "minutes": (time.perf_counter() - start) / 60,
        })
        print(f"{row}: acc {m['accuracy']:.4f}  UF1 {m['uf1']:.4f}  UAR {m['uar']:.4f}", file=sys.stderr)
    return results


def markdown(results: list[dict], title: str) -> str:
    lines = [f"**{title}**", "", "| row | switch | params | accuracy | UF1 | UAR | folds | minutes |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['row']} | {r['switch']} | {r['params']:,} | {r['accuracy']:.4f} | {r['uf1']:.4f} | "
                     f"{r['uar']:.4f} | {r['folds']} | {r['minutes']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("dynimg", type=Path, help="dynimg.h5 (linear weights, phases onset,offset)")
    ap.add_argument("-o", "--out", type=Path, default=Path("runs/dianet_ablation"), help="folder of the runs")
    ap.add_argument("--exact", type=Path, default=None, help="dynimg.h5 made with --kind exact (row 'exact')")
    ap.add_argument("--preset", choices=("full", "small"), default="full",
                    help="full: dianet at 224 px; small: dianet-small at 64 px (CPU)")
    ap.add_argument("--rows", default=None, help=f"comma list of rows [default: all of {','.join(ROWS)}]")
    ap.add_argument("--epochs", type=int, default=None, help="epoch budget [default: the model's]")
    ap.add_argument("--scheme", default="loso", help="loso | kfold")
    ap.add_argument("--k", type=int, default=5, help="groups for --scheme kfold")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--jobs", type=int, default=1, help="parallel fold workers on CPU")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()] if a.rows else None
    try:
        results = run_rows(a.dynimg, a.out, a.preset, rows, a.exact, a.epochs, a.scheme, a.k, a.device, a.jobs,
                           a.seed)
    except MertoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown(results, f"DIANet ablation ({a.preset}, {a.scheme}) on {a.dynimg}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "table.md").write_text(table)
    with open(a.out / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(results[0]))
        w.writeheader()
        w.writerows(results)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
