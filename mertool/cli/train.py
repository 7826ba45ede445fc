"""``mertool train``, ``mertool report`` and ``mertool predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UsageError
from ..log import logger, setup_cli_logging
from .common import ConfigOption, OverwriteOption, out_option


def train(
    ctx: typer.Context,
    features: Optional[Path] = typer.Argument(None, help="Features stage file (e.g. flow.h5)."),
    features_opt: Optional[Path] = typer.Option(None, "--features", help="Same as the positional FEATURES."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered model (see `mertool models`)."),
    out: Optional[Path] = out_option("Run directory [default: runs/<model>, runs/<model>_ORACLE with --oracle].", None),
    config: Optional[Path] = ConfigOption,
    scheme: Optional[str] = typer.Option(None, "--scheme", help="loso | kfold | fixed [default: loso]."),
    k: Optional[int] = typer.Option(None, "--k", help="Folds for --scheme kfold [default: 5]."),
    test_subjects: Optional[str] = typer.Option(None, "--test-subjects", help="Comma-separated test subjects for --scheme fixed."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epoch budget [default: the model's]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size [default: the model's]."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate [default: the model's]."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | adamw | sgd [default: the model's]."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay [default: the model's]."),
    lr_step: Optional[int] = typer.Option(None, "--lr-step", help="Multiply the lr by --lr-gamma every N epochs, 0 = constant [default: the model's]."),
    lr_gamma: Optional[float] = typer.Option(None, "--lr-gamma", help="Step-decay factor [default: the model's]."),
    shuffle: Optional[bool] = typer.Option(None, "--shuffle/--no-shuffle", help="A new random batch order every epoch, or the samples' own order, fixed [default: the model's; STSTNet's release: fixed]."),
    augment: Optional[str] = typer.Option(None, "--augment", help="none | hflip | flow_hflip [default: the model's]."),
    class_balanced: Optional[bool] = typer.Option(None, "--class-balanced/--no-class-balanced", help="Inverse-frequency class weights in the loss [default: off]."),
    early_stopping: Optional[bool] = typer.Option(None, "--early-stopping/--no-early-stopping", help="Stop on validation loss; validation = held-out TRAINING subjects [default: off]."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of training subjects held out for validation [default: 0, or 0.2 with --early-stopping]."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Early-stopping patience in epochs [default: 20]."),
    oracle: Optional[bool] = typer.Option(None, "--oracle/--no-oracle", help="ALSO write best-epoch-on-test results as *_ORACLE files (papers' practice; not an honest estimate) [default: off]."),
    min_class_samples: Optional[int] = typer.Option(None, "--min-class-samples", help="Drop classes with fewer samples [default: 0 = keep all]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [default: 0]."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N [default: auto]."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Comma-separated devices, e.g. cuda:0,cuda:1: one worker process per device, each taking the next fold (or stacked group) when free; cpu may repeat. Instead of --device and --jobs."),
    amp: Optional[str] = typer.Option(None, "--amp", help="auto (the GPU's mixed precision, bf16 where supported, else fp16; none on CPU) | bf16 (bf16 autocast on every device, CPU too) | off [default: auto]."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Folds trained in parallel processes on CPU (-1 = all cores) [default: 1]."),
    fold_batch: Optional[str] = typer.Option(None, "--fold-batch", help="Folds trained as one stacked computation: N, or auto (as many as fit memory); flow-input models [default: 1 = fold by fold]."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds: the protocol once per seed (<out>/seed_<s>/), metrics as mean ± sd over seeds."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Initial weights (state_dict) for every fold."),
    folds: Optional[str] = typer.Option(None, "--folds", help="Comma-separated folds (LOSO: test subjects) to train, e.g. sub01,sub02: one job of a run split into several; jobs may share the run folder at the same time."),
    fold_index: Optional[str] = typer.Option(None, "--fold-index", help="I/N: train the I-th (1-based, I = 1..N) of N contiguous near-equal slices of the run's folds, in fold order (e.g. $SLURM_ARRAY_TASK_ID/N); with --fold-batch B > 1, slices of whole groups of B folds."),
    collect: Optional[Path] = typer.Option(None, "--collect", help="Pool the finished folds of this run folder (split into --folds/--fold-index jobs) into its metrics and reports; takes no other training options. The job that finishes the last fold does this itself."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's final metrics (metrics.json, or the summary over --seeds) as JSON on stdout, nothing else; a job leaving folds to others prints its status and the missing folds."),
    overwrite: bool = OverwriteOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Cross-validate a model subject-independently (LOSO by default) and write a run directory.

    The honest default trains every fold for a fixed epoch budget; nothing is chosen
    by looking at a test subject. Re-running the same command resumes a killed run.
    """
    from ..train.config import TrainConfig
    from ..train.run import collect_run, train_run, train_seeds

    setup_cli_logging()
    if collect is not None:
        given = _given_options(ctx, keep={"collect", "as_json", "quiet"})
        if given:
            raise UsageError(f"--collect takes only the run folder (and --json/--quiet); drop {', '.join(given)}")
        _show(collect_run(collect), as_json)
        return
    if features is not None and features_opt is not None and features != features_opt:
        raise UsageError("give the features file once (positional or --features)")
    path = features or features_opt
    if path is None:
        raise UsageError("no features file given (e.g. mertool train work/flow.h5 --model offtanet)")
    overrides = dict(
        model=model, scheme=scheme, k=k, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
        weight_decay=weight_decay, lr_step=lr_step, lr_gamma=lr_gamma, shuffle=shuffle, augment=augment, class_balanced=class_balanced, early_stopping=early_stopping,
        val_fraction=val_fraction, patience=patience, oracle=oracle, min_class_samples=min_class_samples,
        seed=seed, device=device, jobs=jobs, weights=str(weights) if weights else None,
        test_subjects=[s.strip() for s in test_subjects.split(",") if s.strip()] if test_subjects else None,
    )
    if fold_batch is not None:
        overrides["fold_batch"] = _fold_batch(fold_batch)
    if devices is not None:
        overrides["devices"] = [d.strip() for d in devices.split(",")]
    if amp is not None:
        overrides["amp"] = _amp(amp)
    cfg = TrainConfig.resolve(config, **overrides)
    split = dict(folds=_fold_names(folds) if folds is not None else None,
                 fold_index=_fold_index(fold_index) if fold_index is not None else None)
    if seeds is not None:
        result = train_seeds(path, out, cfg, _seeds(seeds), overwrite=overwrite, progress=not quiet, **split)
    else:
        result = train_run(path, out, cfg, overwrite=overwrite, progress=not quiet, **split)
    _show(result, as_json)


def _given_options(ctx: typer.Context, keep: set[str]) -> list[str]:
    """The parameters given on the command line, other than ``keep``, as their first flag (or name)."""
    return [
        (p.opts[0] if p.param_type_name == "option" else p.name.upper())
        for p in ctx.command.params
        if p.name not in keep and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"
    ]


def _show(result, as_json: bool) -> None:
    """The summary on stderr; with ``as_json`` the final metrics (or the job's status) as JSON on stdout."""
    for line in result.summary().splitlines():
        logger.info(line)
    if as_json:
        out = result.metrics if not result.missing else {
            "run": str(result.path), "status": "running", "missing_folds": list(result.missing)
        }
        typer.echo(json.dumps(out, indent=2))


def _fold_names(text: str) -> list[str]:
    """``--folds sub01,sub02``: fold names."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise UsageError("--folds needs comma-separated fold names, e.g. sub01,sub02")
    return names


def _fold_index(text: str) -> tuple[int, int]:
    """``--fold-index I/N``: two integers (their range is checked by :func:`~mertool.train.run.select_folds`)."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--fold-index must be I/N with 1 <= I <= N (e.g. 3/10), got {text!r}") from None
    return i, n


def _fold_batch(text: str) -> int:
    """``--fold-batch``: ``auto`` (0) or a positive integer."""
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"--fold-batch must be a positive integer or auto, got {text!r}")
    return value


def _amp(text: str) -> bool | str:
    """``--amp auto|bf16|off``: the config's ``amp`` (True, "bf16", False)."""
    modes = {"auto": True, "bf16": "bf16", "off": False}
    if text.strip().lower() not in modes:
        raise UsageError(f"--amp must be one of {', '.join(modes)}, got {text!r}")
    return modes[text.strip().lower()]


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct integers."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {text!r}") from None
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise UsageError(f"--seeds lists seed(s) {', '.join(map(str, dupes))} more than once")
    return seeds


def report(
    runs: List[Path] = typer.Argument(..., help="Run directories."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the table as Markdown here."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Also write the table as CSV here."),
    fmt: str = typer.Option("text", "--format", help="Table format on stdout: text | json (a list of objects) | csv | md (markdown); the same rows in each."),
) -> None:
    """Compare finished runs: UF1, UAR, accuracy, parameters, time."""
    from ..train.report import FORMATS, format_table, summarize_runs

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = summarize_runs(runs)
    typer.echo(format_table(rows, fmt), nl=False)
    if markdown:
        markdown.write_text(format_table(rows, "markdown"))
    if csv_out:
        csv_out.write_text(format_table(rows, "csv"))


def predict(
    run: Path = typer.Option(..., "--run", help="A finished run directory."),
    frames: Optional[Path] = typer.Option(None, "--frames", help="Folder of a clip's frames."),
    video: Optional[Path] = typer.Option(None, "--video", help="A clip's video file."),
    onset: int = typer.Option(1, "--onset", help="Onset frame number."),
    apex: int = typer.Option(-1, "--apex", help="Apex frame number (-1: the middle of onset..offset)."),
    offset: int = typer.Option(-1, "--offset", help="Offset frame number (-1: the last frame)."),
    aus: str = typer.Option("", "--aus", help="The clip's action units, e.g. 4+L10 (models that read AUs)."),
    fold: Optional[str] = typer.Option(None, "--fold", help="Use one fold's model [default: average all folds]."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Classify one clip with a trained run: its recorded feature recipe -> fold-model ensemble."""
    from ..predict import predict_clip

    setup_cli_logging()
    if (frames is None) == (video is None):
        raise UsageError("give exactly one of --frames DIR or --video FILE")
    res = predict_clip(run, frames=frames, video=video, onset=onset, apex=apex, offset=offset, aus=aus,
                      fold=fold, device=device)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"label: {res['label']}")
    for c, p in sorted(res["probabilities"].items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {c:12s} {p:.4f}")


EXAMPLES = {
    "train": "Example: mertool train work/flow.h5 --model offtanet -o runs/offtanet  "
    "(quick check: --model ststnet-fast --scheme kfold --k 5 --epochs 60)",
    "report": "Example: mertool report runs/offtanet runs/ststnet --markdown results.md --csv results.csv",
    "predict": "Example: mertool predict --run runs/offtanet --frames clips/s01_ep1 --onset 1 --apex 9",
}


def register(app: typer.Typer) -> None:
    for command in (train, report, predict):
        app.command(command.__name__, epilog=EXAMPLES[command.__name__])(command)
