"""mertool predict: fold ensemble on model-ready inputs, and its bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.predict import fold_models, predict_inputs
from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("pred")
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=6)
    path = write_flow_h5(tmp / "flow.h5", x, labels, subjects)
    assert cli(["train", str(path), "--model", "tinyflow", "--epochs", "3", "-q", "--device", "cpu", "-o", str(tmp / "run")]) == 0
    return tmp / "run", x


def test_ensemble_is_mean_of_fold_softmax(tiny_run):
    run, x = tiny_run
    p = predict_inputs(run, {"flow": x[:5]})
    models = fold_models(run)
    assert len(models) == 3
    with torch.no_grad():
        expect = np.mean([torch.softmax(m(flow=torch.from_numpy(x[:5])), 1).numpy() for m in models], axis=0)
    assert np.allclose(p, expect, atol=1e-6) and np.allclose(p.sum(1), 1, atol=1e-5)
    one = predict_inputs(run, {"flow": x[:5]}, fold="s2")
    with torch.no_grad():
        assert np.allclose(one, torch.softmax(fold_models(run, "s2")[0](flow=torch.from_numpy(x[:5])), 1).numpy(), atol=1e-6)
    # the run's test-fold predictions are what its fold model says about those samples
    rows = (run / "predictions.csv").read_text().splitlines()[1:]
    first_s3 = next(r.split(",") for r in rows if r.split(",")[3] == "s3")  # sample, subject, dataset, fold
    idx = int(first_s3[0][1:])
    probs = predict_inputs(run, {"flow": x[idx : idx + 1]}, fold="s3")[0]
    assert np.allclose(probs, [float(v) for v in first_s3[6:]], atol=1e-5)


def test_predict_bad_input(tiny_run, tmp_path, capsys):
    run, x = tiny_run
    with pytest.raises(MertoolError, match="expects"):
        predict_inputs(run, {"flow": x[:2, :, :8, :8]})
    with pytest.raises(MertoolError, match="no fold"):
        predict_inputs(run, {"flow": x[:2]}, fold="s9")
    with pytest.raises(MertoolError, match="not a mertool run"):
        predict_inputs(tmp_path, {"flow": x[:2]})
    capsys.readouterr()
    assert cli(["predict", "--run", str(run)]) == 2
    assert "exactly one" in capsys.readouterr().err
    clip = tmp_path / "clip"
    clip.mkdir()
    assert cli(["predict", "--run", str(run), "--frames", str(clip)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:")
    # synthetic features have no aligned.h5 upstream: predict says it cannot replay the alignment
    import cv2

    for i in (1, 2):
        cv2.imwrite(str(clip / f"f{i}.png"), np.zeros((32, 32, 3), np.uint8))
    assert cli(["predict", "--run", str(run), "--frames", str(clip)]) == 1
    assert "aligned.h5" in capsys.readouterr().err
    info = json.loads((run / "run.json").read_text())
    assert info["pipeline"][0]["stage"] == "flow"


def test_report_formats_and_unfinished_run(tiny_run, tmp_path, capsys):
    run, _ = tiny_run
    m = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert cli(["report", str(run), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run,model,scheme,folds,samples,UF1,UAR,acc")
    assert lines[1].split(",")[5] == f"{m['uf1']:.4f}"
    half = tmp_path / "half"
    half.mkdir()
    (half / "run.json").write_text("{}")
    assert cli(["report", str(half)]) == 1
    assert "resume" in capsys.readouterr().err



def test_step_decay_schedule(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "r"
    assert cli(["train", str(run.parent / "flow.h5"), "--model", "tinyflow", "--epochs", "5", "--lr-step", "2",
                "--lr-gamma", "0.5", "-q", "--device", "cpu", "-o", str(out)]) == 0
    lrs = [float(line.split(",")[1]) for line in (out / "folds" / "s1" / "log.csv").read_text().splitlines()[1:]]
    assert lrs == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])  # model default lr 0.01
