"""Training (config, fold trainer, run): end-to-end run, honest selection, reproducibility, resume, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import f1_score, recall_score

from mertool.stages.stagefile import open_stage
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.models import get_entry
from mertool.train import fold as fold_mod
from mertool.train.config import TrainConfig, resolve_recipe
from mertool.train.data import load_train_data
from mertool.train.fold import FoldTrainer, class_weights
from mertool.train.loso import make_folds
from mertool.train.augment import get_augment
from train_fixtures import TinyFlowNet, ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()
# Engine logic is checked on the CPU (bit-exact comparisons); test_cuda_run covers the GPU path.
QUICK = ["--model", "tinyflow", "--epochs", "4", "-q", "--device", "cpu"]


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6)
    return write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_train_end_to_end(flow_file, tmp_path, capsys):
    run = tmp_path / "runs" / "tiny"
    rc = cli(["train", str(flow_file), *QUICK, "-o", str(run), "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    for name in ("config.yaml", "run.json", "predictions.csv", "metrics.json", "folds.csv", "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*ORACLE*"))
    for png in ("curves.png", "confusion.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["seed"] == 3 and cfg["epochs"] == 4 and cfg["batch_size"] == 8  # CLI, then model defaults
    info = json.loads((run / "run.json").read_text())
    assert info["inputs"][0]["key"] == open_stage(flow_file).key
    assert info["classes"] == ["negative", "positive", "surprise"] and info["mertool_version"]
    rows = _read_csv(run / "predictions.csv")
    assert len(rows) == 24
    assert list(rows[0]) == ["sample_id", "subject", "dataset", "fold", "label", "prediction",
                             "p_negative", "p_positive", "p_surprise"]
    assert all(r["fold"] == r["subject"] for r in rows)  # LOSO: each sample tested in its subject's fold
    probs = np.array([[float(r[f"p_{c}"]) for c in info["classes"]] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [info["classes"][i] for i in probs.argmax(1)] == [r["prediction"] for r in rows]
    # metrics.json agrees with sklearn on the written predictions
    m = json.loads((run / "metrics.json").read_text())
    y = [r["label"] for r in rows]
    p = [r["prediction"] for r in rows]
    assert m["uf1"] == pytest.approx(f1_score(y, p, labels=info["classes"], average="macro", zero_division=0))
    assert m["uar"] == pytest.approx(recall_score(y, p, labels=info["classes"], average="macro", zero_division=0))
    assert m["n_folds"] == 4 and m["params"] == sum(q.numel() for q in TinyFlowNet(3).parameters())
    # final checkpoints: plain state_dicts that load with weights_only
    state = torch.load(run / "folds" / "s1" / "final.pt", weights_only=True)
    TinyFlowNet(3).load_state_dict(state)
    log = _read_csv(run / "folds" / "s2" / "log.csv")
    assert [int(r["epoch"]) for r in log] == [1, 2, 3, 4]
    assert not list(run.glob("folds/*/checkpoint.pt"))
    # report
    capsys.readouterr()
    md, cs = tmp_path / "t.md", tmp_path / "t.csv"
    assert cli(["report", str(run), "--markdown", str(md), "--csv", str(cs)]) == 0
    out = capsys.readouterr().out
    assert "UF1" in out and f"{m['uf1']:.4f}" in out
    assert md.read_text().startswith("| run |")
    table = _read_csv(cs)
    assert float(table[0]["UAR"]) == pytest.approx(m["uar"], abs=1e-4) and table[0]["params"] == str(m["params"])


def _load(flow_file):
    return load_train_data(flow_file, get_entry("tinyflow").input, model="tinyflow")


def _fold_probs(data, y, fold, cfg):
    X = {k: torch.from_numpy(v) for k, v in data.inputs.items()}
    result, _ = FoldTrainer(X, y, fold, 0, cfg, len(data.classes), torch.device("cpu")).run()
    return np.array(result.probs), result


@pytest.mark.parametrize("early", [False, True])
def test_test_labels_never_reach_selection(flow_file, early):
    """Predictions are identical when the test fold's labels are changed."""
    data = _load(flow_file)
    cfg = resolve_recipe(TrainConfig(model="tinyflow", epochs=6, early_stopping=early, patience=2))
    (fold,) = make_folds(data.subjects, "fixed", test_subjects=["s2"], val_fraction=cfg.val_fraction)
    if early:
        assert len(fold.val) > 0
    y2 = data.y.copy()
    y2[fold.test] = (y2[fold.test] + 1) % 3  # every test label now wrong
    y3 = data.y.copy()
    y3[fold.test] = np.random.default_rng(0).permutation(y3[fold.test])
    p1, r1 = _fold_probs(data, data.y, fold, cfg)
    p2, _ = _fold_probs(data, y2, fold, cfg)
    p3, _ = _fold_probs(data, y3, fold, cfg)
    assert np.array_equal(p1, p2) and np.array_equal(p1, p3)
    if early:
        assert 1 <= r1.best_epoch <= r1.epochs_run <= 6
    # the comparison is sensitive: changing a TRAINING label changes the predictions
    y4 = data.y.copy()
    y4[fold.train[:6]] = (y4[fold.train[:6]] + 1) % 3
    p4, _ = _fold_probs(data, y4, fold, cfg)
    assert not np.array_equal(p1, p4)


def test_oracle_outputs_are_labelled_and_leave_honest_ones_alone(flow_file, tmp_path):
    honest, oracle = tmp_path / "h", tmp_path / "o"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(honest)]) == 0
    assert cli(["train", str(flow_file), *QUICK, "-o", str(oracle), "--oracle"]) == 0
    names = sorted(p.name for p in oracle.iterdir() if "ORACLE" in p.name)
    assert names == ["confusion_ORACLE.png", "curves_ORACLE.png", "metrics_ORACLE.json", "predictions_ORACLE.csv"]
    assert _read_csv(honest / "predictions.csv") == _read_csv(oracle / "predictions.csv")
    assert "ORACLE" in json.loads((oracle / "metrics_ORACLE.json").read_text())["selection"]
    assert "ORACLE" not in json.loads((oracle / "metrics.json").read_text())["selection"]
    assert cli(["train", str(flow_file), *QUICK, "-o", str(tmp_path / "x"), "--oracle", "--early-stopping"]) == 2


def test_same_seed_same_metrics(flow_file, tmp_path):
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert cli(["train", str(flow_file), *QUICK, "-o", str(tmp_path / name), "--seed", str(seed)]) == 0
        runs.append(_read_csv(tmp_path / name / "predictions.csv"))
    metrics = [json.loads((tmp_path / n / "metrics.json").read_text()) for n in "ab"]
    for m in metrics:
        m.pop("train_seconds"), m.pop("wall_seconds")
    assert runs[0] == runs[1] and metrics[0] == metrics[1]
    assert [r["p_negative"] for r in runs[0]] != [r["p_negative"] for r in runs[2]]


def test_resume_from_epoch_checkpoint_matches_uninterrupted(flow_file, tmp_path, monkeypatch):
    full = tmp_path / "full"
    args = ["train", str(flow_file), "--model", "tinyflow", "--epochs", "6", "-q", "--device", "cpu"]
    assert cli([*args, "-o", str(full)]) == 0
    # Interrupt the second run right after fold s2 wrote its epoch-4 checkpoint.
    real_save = fold_mod.atomic_torch_save
    calls = {"n": 0}

    def save_then_die(obj, path):
        real_save(obj, path)
        calls["n"] += 1
        if "s2" in str(path) and obj["epoch"] == 4:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    monkeypatch.setattr(fold_mod, "atomic_torch_save", save_then_die)
    assert cli([*args, "-o", str(part), "--config", str(_yaml(tmp_path, checkpoint_every=2))]) == 130
    assert (part / "folds" / "s1" / "result.json").exists()
    assert (part / "folds" / "s2" / "checkpoint.pt").exists() and not (part / "folds" / "s2" / "result.json").exists()
    monkeypatch.setattr(fold_mod, "atomic_torch_save", real_save)
    s1_mtime = (part / "folds" / "s1" / "result.json").stat().st_mtime_ns
    assert cli([*args, "-o", str(part), "--config", str(_yaml(tmp_path, checkpoint_every=2))]) == 0
    assert (part / "folds" / "s1" / "result.json").stat().st_mtime_ns == s1_mtime  # finished fold kept
    assert _read_csv(full / "predictions.csv") == _read_csv(part / "predictions.csv")
    assert _read_csv(full / "folds" / "s2" / "log.csv") == _read_csv(part / "folds" / "s2" / "log.csv")


def _yaml(tmp_path: Path, **kw) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(kw))
    return p


def test_run_dir_exists(flow_file, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run)]) == 0
    mtime = (run / "folds" / "s1" / "final.pt").stat().st_mtime_ns
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run)]) == 0  # same config: nothing to redo
    assert (run / "folds" / "s1" / "final.pt").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--lr", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--lr", "0.5", "--overwrite"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.5
    other = tmp_path / "notarun"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert cli(["train", str(flow_file), *QUICK, "-o", str(other)]) == 1
    assert (other / "keep.txt").exists()


def _err(capsys, argv, code: int = 1) -> str:
    capsys.readouterr()
    assert cli(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    return err


def test_bad_features(tmp_path, capsys):
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=4)
    out = str(tmp_path / "r")
    nolab = write_flow_h5(tmp_path / "nolab.h5", x, None, subjects)
    assert "'label'" in _err(capsys, ["train", str(nolab), *QUICK, "-o", out])
    nosub = write_flow_h5(tmp_path / "nosub.h5", x, labels, None)
    assert "'subject'" in _err(capsys, ["train", str(nosub), *QUICK, "-o", out])
    bad = x.copy()
    bad[5, 0, 2, 3] = np.nan
    bad[7, 1] = np.inf
    nan = write_flow_h5(tmp_path / "nan.h5", bad, labels, subjects)
    err = _err(capsys, ["train", str(nan), *QUICK, "-o", out])
    assert "c005" in err and "c007" in err and "NaN" in err and "c004" not in err
    small = write_flow_h5(tmp_path / "small.h5", x[:, :, :8, :8].copy(), labels, subjects)
    assert "expects (3, 16, 16)" in _err(capsys, ["train", str(small), *QUICK, "-o", out])
    assert "did you mean" in _err(capsys, ["train", str(nolab), "--model", "offtanett", "-o", out], code=2)
    assert "features file" in _err(capsys, ["train", "--model", "tinyflow", "-o", out], code=2)


def test_wrong_stage(tmp_path, capsys):
    from mertool.stages.stagefile import StageWriter

    w = StageWriter(tmp_path / "dyn.h5", "dynimg", {"x": 1})
    w.add("a", {"dynimg": np.zeros((2, 3, 4, 4), np.float32)}, {"label": "x", "subject": "s"})
    w.finish(["a"], stacked=True)
    err = _err(capsys, ["train", str(tmp_path / "dyn.h5"), *QUICK, "-o", str(tmp_path / "r")])
    assert "'dynimg' stage file" in err and "'flow'" in err


def test_class_absent_from_a_training_fold(tmp_path, capsys):
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=4)
    labels = list(labels)
    labels[0] = labels[1] = "fear"  # both in subject s1
    path = write_flow_h5(tmp_path / "f.h5", x, labels, subjects)
    err = _err(capsys, ["train", str(path), *QUICK, "-o", str(tmp_path / "r")])
    assert "fold s1" in err and "'fear'" in err and "--min-class-samples" in err
    assert cli(["train", str(path), *QUICK, "-o", str(tmp_path / "r2"), "--min-class-samples", "3"]) == 0
    info = json.loads((tmp_path / "r2" / "run.json").read_text())
    assert info["dropped_classes"] == {"fear": 2} and "fear" not in info["classes"] and info["n_samples"] == 10


def test_subject_with_one_sample_and_batch_of_one(tmp_path):
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=6)
    x, labels, subjects = x[:13], labels[:13], subjects[:13]  # s3 has one sample
    path = write_flow_h5(tmp_path / "f.h5", x, labels, subjects)
    # fold s3 trains on 12 samples; with batch 11 the last batch would hold one (BatchNorm fails on it)
    assert cli(["train", str(path), *QUICK, "--batch-size", "11", "-o", str(tmp_path / "r")]) == 0
    rows = _read_csv(tmp_path / "r" / "predictions.csv")
    assert [r["sample_id"] for r in rows if r["fold"] == "s3"] == ["c012"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_run(flow_file, tmp_path):
    """GPU path (AMP, device-side data): trains, predicts, and the checkpoints load on the CPU."""
    run = tmp_path / "gpu"
    assert cli(["train", str(flow_file), "--model", "tinyflow", "--epochs", "6", "-q", "--device", "cuda", "-o", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(m["uf1"]) and m["n_samples"] == 24
    assert m["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")  # --amp auto on a GPU
    name = f"cuda:0 {torch.cuda.get_device_name(0)}"
    assert {(f["device"], f["precision"]) for f in _read_csv(run / "folds.csv")} == {(name, m["precision"])}
    TinyFlowNet(3).load_state_dict(torch.load(run / "folds" / "s1" / "final.pt", weights_only=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_but_absent(flow_file, tmp_path, capsys):
    err = _err(capsys, ["train", str(flow_file), *QUICK, "--device", "cuda", "-o", str(tmp_path / "r")])
    assert "no CUDA device" in err and "--device cpu" in err


def test_config_yaml_and_unknown_option(flow_file, tmp_path, capsys):
    cfg = _yaml(tmp_path, epochs=2, lr=0.002, augment="flow_hflip", class_balanced=True)
    assert cli(["train", str(flow_file), "--model", "tinyflow", "-q", "--config", str(cfg), "--epochs", "3", "--device", "cpu",
                "-o", str(tmp_path / "r")]) == 0
    got = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (got["epochs"], got["lr"], got["augment"], got["class_balanced"]) == (3, 0.002, "flow_hflip", True)
    bad = _yaml(tmp_path, epoch=2)
    assert "unknown option" in _err(capsys, ["train", str(flow_file), *QUICK, "--config", str(bad), "-o", str(tmp_path / "x")], code=2)
    assert "augmentation" in _err(capsys, ["train", str(flow_file), *QUICK, "--augment", "flip", "-o", str(tmp_path / "y")], code=2)


def test_early_stopping_run_and_aux_loss(flow_file, tmp_path):
    run = tmp_path / "es"
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6, signal=0.0)  # nothing to learn: overfits
    noise = write_flow_h5(tmp_path / "noise.h5", x, labels, subjects)
    assert cli(["train", str(noise), "--model", "tinyflow", "-q", "--epochs", "30", "--early-stopping", "--device", "cpu",
                "--patience", "2", "--val-fraction", "0.34", "-o", str(run)]) == 0
    folds = _read_csv(run / "folds.csv")
    assert all(int(f["n_val"]) == 6 and int(f["n_train"]) == 12 for f in folds)  # 1 of 3 training subjects
    assert all(int(f["chosen_epoch"]) <= int(f["epochs_run"]) <= 30 for f in folds)
    assert any(int(f["epochs_run"]) < 30 for f in folds)  # patience 2 stops early
    # a model returning (logits, aux_loss) trains too
    data = _load(tmp_path / "flow.h5")
    cfg = resolve_recipe(TrainConfig(model="tinyflow", epochs=2, model_kwargs={"aux": True}))
    (fold,) = make_folds(data.subjects, "fixed", test_subjects=["s1"])
    probs, _ = _fold_probs(data, data.y, fold, cfg)
    assert probs.shape == (6, 3)


def test_class_weights_and_flow_flip():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert np.allclose(w, [4 / (2 * 3), 4 / (2 * 1)])
    with pytest.raises(ValueError):
        class_weights(np.array([0, 0]), 2)
    flow = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(2, generator=torch.Generator().manual_seed(0)) < 0.5
    out = get_augment("flow_hflip")({"flow": flow}, gen, encoding="signed")["flow"]
    for i in range(2):
        if mask[i]:
            assert torch.equal(out[i, 0], -flow[i, 0].flip(-1)) and torch.equal(out[i, 1:], flow[i, 1:].flip(-1))
        else:
            assert torch.equal(out[i], flow[i])


def test_config_validation():
    with pytest.raises(MertoolError, match="no model"):
        TrainConfig.resolve()
    with pytest.raises(MertoolError, match="optimizer"):
        TrainConfig.resolve(model="tinyflow", optimizer="rmsprop")
    with pytest.raises(MertoolError, match="epochs"):
        TrainConfig.resolve(model="tinyflow", epochs=0)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume(flow_file, tmp_path):
    """A subprocess killed with SIGKILL mid-fold resumes to the uninterrupted result."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "run_tiny.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from train_fixtures import ensure_tiny\n"
        "ensure_tiny()\n"
        "from mertool.cli.main import cli\n"
        "sys.exit(cli(sys.argv[1:]))\n"
    )
    cfg = _yaml(tmp_path, checkpoint_every=1)
    args = ["train", str(flow_file), "--model", "tinyflow", "--epochs", "60", "-q", "--config", str(cfg), "--device", "cpu"]
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), *args, "-o", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            assert proc.poll() is None, "run finished before it could be killed"
            if (run / "folds" / "s1" / "result.json").exists() and (run / "folds" / "s2" / "checkpoint.pt").exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            time.sleep(0.005)
        else:
            raise TimeoutError("no checkpoint appeared")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (run / "metrics.json").exists() and not (run / "folds" / "s2" / "result.json").exists()
    assert cli([*args, "-o", str(run)]) == 0  # resume
    full = tmp_path / "full"
    assert cli([*args, "-o", str(full)]) == 0
    assert _read_csv(full / "predictions.csv") == _read_csv(run / "predictions.csv")
    assert not list(run.glob("folds/*/checkpoint.pt"))


@pytest.mark.slow
def test_parallel_fold_workers_match_serial(tmp_path):
    """--jobs 2 (worker processes, registry model) gives the serial run's predictions."""
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6, size=28)
    path = write_flow_h5(tmp_path / "f28.h5", x, labels, subjects)
    base = ["train", str(path), "--model", "ststnet-fast", "--epochs", "3", "-q", "--device", "cpu"]
    assert cli([*base, "-o", str(tmp_path / "serial")]) == 0
    assert cli([*base, "-o", str(tmp_path / "par"), "--jobs", "2"]) == 0
    a, b = _read_csv(tmp_path / "serial" / "predictions.csv"), _read_csv(tmp_path / "par" / "predictions.csv")
    assert [r["sample_id"] for r in a] == [r["sample_id"] for r in b]
    pa = np.array([[float(r[k]) for k in r if k.startswith("p_")] for r in a])
    pb = np.array([[float(r[k]) for k in r if k.startswith("p_")] for r in b])
    assert np.allclose(pa, pb, atol=1e-4)
