"""Stacked folds (mertool.train.stacked): equivalence with the sequential engine, reproducibility, refusals."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from mertool.cli.main import cli
from mertool.models import get_entry
from mertool.train.config import TrainConfig, resolve_recipe
from mertool.train.fold import FoldTrainer
from mertool.train.loso import make_folds
from mertool.train.stacked import (
    DropoutCall, Replica, StackedTrainer, _optimizer_step, auto_fold_batch, dropout_calls, seed_summary, stack_refusal,
)
from train_fixtures import ensure_tiny, limit_stacked_replicas, synthetic_flow, write_flow_h5

ensure_tiny()
CPU = torch.device("cpu")
FLOW_MODELS = ("offtanet", "ststnet", "ststnet-fast", "offapexnet")


def _setup(model: str, per_subject=(5, 7, 6, 9), val_fraction=0.0, **cfg_kw):
    """Uneven subjects (so folds differ in training-set size and last-batch size) of the model's input size."""
    size = get_entry(model).input.arrays["flow"][-1]
    x, labels, subjects = synthetic_flow(n_subjects=len(per_subject), per_subject=max(per_subject), size=size)
    keep = np.concatenate([np.arange(i * max(per_subject), i * max(per_subject) + n) for i, n in enumerate(per_subject)])
    x, labels, subjects = x[keep], [labels[i] for i in keep], [subjects[i] for i in keep]
    classes = sorted(set(labels))
    y = np.array([classes.index(c) for c in labels])
    cfg = resolve_recipe(TrainConfig(model=model, channels_last=False, **cfg_kw))
    folds = make_folds(subjects, "loso", 5, [], val_fraction, cfg.seed)
    return {"flow": torch.from_numpy(x)}, y, folds, cfg, len(classes)


# Adam on Off-TANet is left out: its conv biases feed BatchNorm, so their true gradient is 0 and
# Adam scales the round-off left in them to full steps; the sequential engine itself then moves
# test probabilities by ~2e-3 between memory layouts (channels-last vs contiguous).
CASES = [(m, "sgd") for m in FLOW_MODELS] + [(m, "adam") for m in FLOW_MODELS if m != "offtanet"]


def _assert_equal_to_solo(stacked, X, y, folds, cfg, k):
    """Each replica's result and weights equal its fold trained alone by FoldTrainer; returns the solo results."""
    solos = []
    for i, fold in enumerate(folds):
        solo, solo_w = FoldTrainer(X, y, fold, i, cfg, k, CPU).run()
        solos.append(solo)
        res, w = stacked[i]
        assert res.name == fold.name and res.test_index == solo.test_index
        assert (res.epochs_run, res.best_epoch) == (solo.epochs_run, solo.best_epoch)
        np.testing.assert_allclose(res.probs, solo.probs, atol=1e-4)
        assert w.keys() == solo_w.keys()
        for key in w:
            np.testing.assert_allclose(w[key].float().numpy(), solo_w[key].float().numpy(), atol=1e-4, err_msg=key)
        for a, b in zip(res.history, solo.history, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-4), key
    return solos


@pytest.mark.parametrize("model,optimizer", CASES)
def test_stacked_folds_equal_sequential_folds(model, optimizer):
    """A stacked fold ends where the fold trained alone ends; with dropout on too (SGD cases): on the CPU
    each replica's dropout masks are the ones the fold alone draws."""
    # Adam runs without dropout: a weight whose true gradient is 0 in a batch (a dropped unit's fan-in)
    # gets round-off in the stack, which Adam scales to a full step (as with Off-TANet's biases above).
    kwargs = {"model_kwargs": {"dropout": 0.0}} if optimizer == "adam" else {}
    X, y, folds, cfg, k = _setup(model, epochs=3, batch_size=8, lr=1e-3,
                                 lr_step=2, lr_gamma=0.5, optimizer=optimizer, momentum=0.9, **kwargs)
    assert stack_refusal(cfg, CPU, k) is None
    if optimizer == "sgd":  # dropout is on
        assert dropout_calls(get_entry(model).builder(num_classes=k), {k_: v[:2] for k_, v in X.items()})
    stacked = StackedTrainer(X, y, [Replica(f, i, cfg.seed) for i, f in enumerate(folds)], cfg, k, CPU).run()
    solos = _assert_equal_to_solo(stacked, X, y, folds, cfg, k)
    assert solos[0].history[0]["train_loss"] != solos[0].history[-1]["train_loss"]  # it trained


@pytest.mark.parametrize("extra", [{"early_stopping": True, "patience": 2, "val_fraction": 0.25, "epochs": 12},
                                   {"oracle": True, "epochs": 6}])
def test_stacked_early_stopping_and_oracle_per_replica(extra):
    """Each replica validates on its own subjects, stops when its own patience runs out (leaving the
    others training) and keeps its own best weights -- or keeps its own ORACLE record -- as the fold alone does."""
    X, y, folds, cfg, k = _setup("ststnet-fast", per_subject=(5, 7, 6, 9, 4, 6), batch_size=8, lr=0.02,
                                 optimizer="sgd", momentum=0.9, **extra)
    assert stack_refusal(cfg, CPU, k) is None
    stacked = StackedTrainer(X, y, [Replica(f, i, cfg.seed) for i, f in enumerate(folds)], cfg, k, CPU).run()
    solos = _assert_equal_to_solo(stacked, X, y, folds, cfg, k)
    if cfg.early_stopping:
        assert len({s.epochs_run for s in solos}) > 1  # the replicas stopped at different epochs
        assert any(s.best_epoch < s.epochs_run for s in solos)  # and returned earlier (best-validation) weights
    else:
        assert len({s.oracle["epoch"] for s in solos}) > 1
        for (res, _), solo in zip(stacked, solos):
            assert res.oracle["epoch"] == solo.oracle["epoch"]
            np.testing.assert_allclose(res.oracle["probs"], solo.oracle["probs"], atol=1e-4)


def test_dropout_calls_in_forward_order_with_their_shapes():
    """STSTNet's three branch dropouts: 28 px + 2 x 2 padding -> conv 3x3 -> 30 -> max-pool (3, stride 3,
    padding 1) -> 10 x 10, with 3, 5 and 8 channels (the hand-worked shapes)."""
    model = get_entry("ststnet").builder(num_classes=3)
    calls = dropout_calls(model, {"flow": torch.zeros(2, 3, 28, 28)})
    assert calls == [DropoutCall(f"branches.{i}.4", (c, 10, 10), torch.float32, 0.5) for i, c in enumerate((3, 5, 8))]


class _Noisy(torch.nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind, self.drop = kind, torch.nn.Dropout(0.5)

    def forward(self, flow):
        x = flow.flatten(1)
        if self.kind == "noise":
            return self.drop(x) + torch.randn_like(x)
        if self.kind == "twice":
            return self.drop(self.drop(x))
        return self.drop(x.T)  # the batch is not the first dimension


@pytest.mark.parametrize("kind,message", [("noise", "random numbers drawn outside nn.Dropout"),
                                          ("twice", "'drop' called twice"), ("transposed", "first dimension")])
def test_dropout_calls_refuses_what_masks_cannot_replace(kind, message):
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=message):
        dropout_calls(_Noisy(kind), {"flow": torch.zeros(2, 3, 4, 4)})
    assert torch.equal(state, torch.get_rng_state())  # the probe leaves the generator as it found it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_dropout_streams_do_not_depend_on_the_stack():
    """On a GPU the stacked draws differ from the fold alone's (fused kernel), but a replica's results are
    the same whichever replicas share its stack."""
    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=3, batch_size=8, optimizer="sgd")
    gpu = torch.device("cuda")
    X = {key: v.to(gpu) for key, v in X.items()}
    whole = StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds)], cfg, k, gpu).run()
    pair = StackedTrainer(X, y, [Replica(f, i, 0) for i, f in list(enumerate(folds))[2:]], cfg, k, gpu).run()
    for (a, _), (b, _) in zip(whole[2:], pair):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("stacked", [True, False])
def test_cuda_epoch_syncs_per_epoch_not_per_step(stacked):
    """The host waits for the GPU a fixed number of times per epoch (index copy, the epoch's sums), however
    many steps the epoch has (CUDA's sync debug mode counts the waits); stacked and fold by fold."""
    import warnings

    waits = []
    for batch_size in (4, 16):
        X, y, folds, cfg, k = _setup("ststnet-fast", epochs=2, batch_size=batch_size, optimizer="sgd",
                                     augment="flow_hflip")
        gpu = torch.device("cuda")
        X = {key: v.to(gpu) for key, v in X.items()}
        if stacked:
            trainer = StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds)], cfg, k, gpu,
                                     encoding="signed")
        else:
            trainer = FoldTrainer(X, y, folds[0], 0, cfg, k, gpu, encoding="signed")
        trainer.setup()
        trainer.train_epoch(0)  # the first epoch makes the member index tensors
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trainer.train_epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        waits.append(sum("synchronizing" in str(w.message) for w in caught))
    assert waits[0] == waits[1] <= 3, waits


def test_stacked_augmentation_draws_match_sequential():
    """flow_hflip draws each replica's flips from its own generator, as the fold alone draws them."""
    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=2, batch_size=8, optimizer="sgd", augment="flow_hflip")
    stacked = StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds)], cfg, k, CPU, encoding="signed").run()
    for i, fold in enumerate(folds):
        solo, _ = FoldTrainer(X, y, fold, i, cfg, k, CPU, encoding="signed").run()
        np.testing.assert_allclose(stacked[i][0].probs, solo.probs, atol=1e-4)


@pytest.mark.parametrize("optimizer,extra", [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                             ("adamw", {"weight_decay": 0.05}), ("adam", {"weight_decay": 0.01})])
def test_batched_optimizer_step_matches_torch_optim(optimizer, extra):
    """Two replicas at different step counts each move as torch.optim moves them alone."""
    cfg = resolve_recipe(TrainConfig(model="ststnet-fast", optimizer=optimizer, lr=0.01, **extra))
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(2, 4, 3, generator=gen)
    grads = [torch.randn(2, 4, 3, generator=gen) for _ in range(3)]
    keys = ("buf",) if optimizer == "sgd" else ("m", "v")
    state, p, steps = {s: torch.zeros_like(p0) for s in keys}, p0.clone(), torch.zeros(2, dtype=torch.float64)
    for t, g in enumerate(grads):
        members = [0, 1] if t < 2 else [1]  # replica 0 has only 2 steps, replica 1 three
        idx = torch.tensor(members)
        steps[idx] += 1
        sub = {s: v[idx] for s, v in state.items()}
        p[idx] = _optimizer_step(cfg, p[idx], g[idx], sub, steps[idx], cfg.lr)
        for s in keys:
            state[s][idx] = sub[s]
    for r, n_steps in ((0, 2), (1, 3)):
        ref = torch.nn.Parameter(p0[r].clone())
        opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer](
            [ref], lr=cfg.lr, weight_decay=cfg.weight_decay, **({"momentum": cfg.momentum} if optimizer == "sgd" else {}))
        for g in grads[:n_steps]:
            ref.grad = g[r].clone()
            opt.step()
        torch.testing.assert_close(p[r], ref.detach(), atol=1e-6, rtol=1e-5)


def test_dropout_and_augment_reproducible_from_the_seed():
    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=2, augment="flow_hflip")
    runs = [StackedTrainer(X, y, [Replica(f, i, s) for s in (0, 1) for i, f in enumerate(folds[:2])], cfg, k, CPU,
                           encoding="signed").run() for _ in range(2)]
    for (a, _), (b, _) in zip(*runs):
        assert a.probs == b.probs
    assert runs[0][0][0].probs != runs[0][2][0].probs  # same fold, other seed: another model


def test_refusals():
    base = resolve_recipe(TrainConfig(model="ststnet-fast"))
    assert stack_refusal(dataclasses.replace(base, early_stopping=True, val_fraction=0.2), CPU, 3) is None
    assert stack_refusal(dataclasses.replace(base, oracle=True), CPU, 3) is None
    assert "accumulation" in stack_refusal(dataclasses.replace(base, accumulate=2), CPU, 3)
    assert "input stage 'pairs'" in stack_refusal(resolve_recipe(TrainConfig(model="facesleuth-small")), CPU, 3)


def test_seed_summary_mean_and_sd():
    s = seed_summary({0: {"uf1": 0.5, "uar": 0.4, "accuracy": 0.6}, 2: {"uf1": 0.7, "uar": 0.6, "accuracy": 0.6}})
    assert s["seeds"] == [0, 2] and s["uf1"] == pytest.approx(0.6) and s["uf1_per_seed"] == [0.5, 0.7]
    assert s["uf1_sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and s["accuracy_sd"] == 0.0


def _flow28(tmp_path, per_subject=(5, 7, 6, 9)):
    x, labels, subjects = synthetic_flow(n_subjects=len(per_subject), per_subject=max(per_subject), size=28)
    keep = np.concatenate([np.arange(i * max(per_subject), i * max(per_subject) + n) for i, n in enumerate(per_subject)])
    return write_flow_h5(tmp_path / "f28.h5", x[keep], [labels[i] for i in keep], [subjects[i] for i in keep])


def _probs(run, name: str = "predictions.csv") -> np.ndarray:
    with open(run / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows])


def test_cli_fold_batch_matches_fold_by_fold_and_clamps(tmp_path, capsys):
    """`--fold-batch 99` (clamped to the 4 folds) gives the fold-by-fold run's predictions (no dropout)."""
    flow = _flow28(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model_kwargs": {"dropout": 0.0}, "optimizer": "sgd", "lr": 0.01, "channels_last": False}))
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "3", "-q", "--device", "cpu", "--config", str(cfg)]
    assert cli([*base, "-o", str(tmp_path / "seq")]) == 0
    capsys.readouterr()
    assert cli([*base, "-o", str(tmp_path / "st"), "--fold-batch", "99"]) == 0
    err = capsys.readouterr().err
    assert "fold batch 99 clamped to the 4 folds" in err and "(stacked)" in err
    np.testing.assert_allclose(_probs(tmp_path / "st"), _probs(tmp_path / "seq"), atol=1e-4)
    assert not list((tmp_path / "st").rglob("*checkpoint*"))


def test_stacked_groups_in_worker_processes_match_groups_in_this_process(tmp_path, capsys):
    """`--fold-batch 2 --jobs 2`: each group of 2 folds trains in a worker, as in this process."""
    flow = _flow28(tmp_path)
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "3", "-q", "--device", "cpu", "--fold-batch", "2"]
    assert cli([*base, "-o", str(tmp_path / "here")]) == 0
    capsys.readouterr()
    assert cli([*base, "-o", str(tmp_path / "workers"), "--jobs", "2"]) == 0
    assert capsys.readouterr().err.count("(stacked)") == 4
    np.testing.assert_allclose(_probs(tmp_path / "workers"), _probs(tmp_path / "here"), atol=1e-4)


@pytest.mark.parametrize("flag", ["--early-stopping", "--oracle"])
def test_cli_fold_batch_with_early_stopping_or_oracle_matches_fold_by_fold(tmp_path, capsys, flag):
    """`--fold-batch auto` with early stopping or ORACLE bookkeeping stacks, and writes the fold-by-fold run's
    predictions (dropout on)."""
    flow = _flow28(tmp_path, per_subject=(5, 7, 6, 9, 4, 6))
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "4", "-q", "--device", "cpu", flag]
    assert cli([*base, "-o", str(tmp_path / "seq")]) == 0
    capsys.readouterr()
    assert cli([*base, "--fold-batch", "auto", "-o", str(tmp_path / "st")]) == 0
    assert "(stacked)" in capsys.readouterr().err
    np.testing.assert_allclose(_probs(tmp_path / "st"), _probs(tmp_path / "seq"), atol=1e-4)
    if flag == "--oracle":
        oracle = [_probs(tmp_path / d, "predictions_ORACLE.csv") for d in ("st", "seq")]
        np.testing.assert_allclose(oracle[0], oracle[1], atol=1e-4)


def test_stacked_resume_after_kill_matches_uninterrupted(tmp_path, monkeypatch):
    """A group killed after its epoch-2 checkpoint resumes to the uninterrupted result (dropout on)."""
    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=4)
    cfg = dataclasses.replace(cfg, checkpoint_every=2)
    reps = [Replica(f, i, cfg.seed) for i, f in enumerate(folds)]
    ref = StackedTrainer(X, y, reps, cfg, k, CPU).run()
    ck = tmp_path / "stack.pt"
    real = StackedTrainer.train_epoch

    def dying(self, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        real(self, epoch)

    monkeypatch.setattr(StackedTrainer, "train_epoch", dying)
    with pytest.raises(KeyboardInterrupt):
        StackedTrainer(X, y, reps, cfg, k, CPU, ck).run()
    assert ck.exists()
    monkeypatch.setattr(StackedTrainer, "train_epoch", real)
    again = StackedTrainer(X, y, reps, cfg, k, CPU, ck)
    out = again.run()
    assert again.first_epoch == 2
    for (a, _), (b, _) in zip(out, ref):
        assert a.probs == b.probs and len(a.history) == 4


def test_cli_seeds_mean_sd_and_report(tmp_path, capsys):
    flow = _flow28(tmp_path)
    run = tmp_path / "seeds"
    argv = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "2", "-q", "--device", "cpu", "-o", str(run)]
    assert cli([*argv, "--seeds", "2,0", "--fold-batch", "4"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    per = [json.loads((run / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 2)]
    assert m["seeds"] == [0, 2] and m["uf1_per_seed"] == [p["uf1"] for p in per]
    assert m["uf1"] == pytest.approx(np.mean(m["uf1_per_seed"]))
    assert m["uf1_sd"] == pytest.approx(np.std(m["uf1_per_seed"], ddof=1))
    assert m["precision"] == per[0]["precision"] == "fp32"  # stacked folds record theirs too
    capsys.readouterr()
    assert cli(["report", str(run), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert f"{m['uf1']:.4f} ± {m['uf1_sd']:.4f}" in out


@pytest.mark.parametrize("flag,value,msg", [
    ("--seeds", "1,1", "more than once"), ("--seeds", "1,x", "comma-separated integers"),
    ("--fold-batch", "0", "positive integer or auto"), ("--fold-batch", "two", "positive integer or auto"),
])
def test_cli_bad_fold_batch_and_seeds(tmp_path, capsys, flag, value, msg):
    flow = _flow28(tmp_path)
    rc = cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--device", "cpu",
              "-o", str(tmp_path / "r"), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_auto_fold_batch_is_bounded_by_memory_and_folds():
    X, y, folds, cfg, k = _setup("offtanet")
    assert auto_fold_batch(cfg, X, k, CPU, most=4) == 4  # a few 59k-parameter replicas fit in RAM
    assert auto_fold_batch(cfg, X, k, CPU, most=4, share=1e-9) == 1  # never below one


def test_out_of_memory_halves_the_group_and_keeps_going(tmp_path, capsys, monkeypatch):
    """A stack that does not fit is split in two and retried (logged); every fold finishes."""
    flow = _flow28(tmp_path)
    limit_stacked_replicas(monkeypatch, most=2)
    assert cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--device", "cpu",
                "--fold-batch", "4", "-o", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "out of memory with 4 stacked folds; retrying as 2 + 2" in err
    assert len(list((tmp_path / "r" / "folds").glob("*/result.json"))) == 4


def test_identity_says_only_whether_folds_are_stacked():
    """Any stacked grouping computes the same (each replica's streams are its own), so a stacked run resumes
    under another --fold-batch; stacked or not stays in the identity (on a GPU the dropout draws differ)."""
    from mertool.train.config import identity

    cfg = resolve_recipe(TrainConfig(model="ststnet-fast"))
    assert identity(cfg, "k") == identity(dataclasses.replace(cfg, fold_batch=1), "k")
    stacked = {identity(dataclasses.replace(cfg, fold_batch=n), "k") for n in (0, 2, 4)}
    assert len(stacked) == 1 and identity(cfg, "k") not in stacked


def test_stacked_training_shows_epoch_progress_with_eta_and_names_a_resume(tmp_path, capsys, monkeypatch, caplog):
    """`--fold-batch 2`: one epoch bar with an ETA per stacked group; hidden under -q; a resume is logged."""
    import functools
    import re

    import tqdm.auto

    import mertool.log

    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, mininterval=0))  # draw every epoch
    monkeypatch.setattr(mertool.log, "_stderr_is_terminal", lambda: True)  # as at a terminal
    flow = _flow28(tmp_path)
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "3", "--device", "cpu", "--fold-batch", "2"]
    assert cli([*base, "-o", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    for group in ("s1..s2", "s3..s4"):  # 4 subjects -> 4 LOSO folds -> 2 stacked groups
        bar = re.findall(rf"2 stacked folds {re.escape(group)}:\s+\d+%.*?\| ?(\d)/3 \[[\d:]+<[\d:?]+", err)
        assert bar and bar[-1] == "3", (group, err)
    assert cli([*base, "-o", str(tmp_path / "quiet"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "stacked folds" not in err and "\r" not in err

    X, y, folds, cfg, k = _setup("ststnet-fast", epochs=2)
    cfg = dataclasses.replace(cfg, checkpoint_every=1)
    reps = [Replica(f, i, cfg.seed) for i, f in enumerate(folds)]
    ck = tmp_path / "stack.pt"
    StackedTrainer(X, y, reps, cfg, k, CPU, ck).run()  # leaves the epoch-1 checkpoint behind
    mertool.log.logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="mertool"):
            StackedTrainer(X, y, reps, cfg, k, CPU, ck).run()
    finally:
        mertool.log.logger.removeHandler(caplog.handler)
    assert "resuming 4 stacked folds s1..s4 from epoch 2 (1 of 2 done)" in caplog.text
