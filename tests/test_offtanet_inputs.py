"""Published-weights check (issue 15, item 4): an Off-TANet checkpoint, run through
``mertool predict`` on a clip, gives what the model gives on the preset's input computed
independently of mertool (``offtanet_reference``).

The checkpoints are the fold state_dicts of a short ``mertool train`` run on Off-TANet's
input (their key layout is the authors' published one; see ``mertool.models.offtanet``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import offtanet_reference as reference
import torch
from crop_fixtures import tight_clip, write_frames

from mertool.cli.main import cli
from mertool.models import create_model
from mertool.predict import predict_clip
from mertool.samples import Sample, write_samples
from mertool.stages.align import AlignConfig, run_align
from mertool.stages.flow import FlowConfig, run_flow
from mertool.train.rundir import RunDir


def _training_features(root: Path) -> Path:
    """flow.h5 of four tightly cropped clips (two subjects, two classes), made the way the
    preset documents: the crop resized once to 112 (``--crop none --size 112``)."""
    samples = []
    clips = [("sub01", "positive"), ("sub01", "negative"), ("sub02", "positive"), ("sub02", "negative")]
    for k, (subject, label) in enumerate(clips):
        folder = write_frames(root / f"c{k}", tight_clip(3, seed=k))
        samples.append(Sample(f"c{k}", subject, 1, 3, 3, label, dataset="casme2", clip=f"c{k}", frames=str(folder)))
    csv = write_samples(samples, root / "samples.csv")
    aligned = run_align(csv, root / "aligned.h5", AlignConfig(crop="none", size=112), progress=False).path
    return run_flow(aligned, root / "flow.h5", FlowConfig.resolve(preset="offtanet"), progress=False).path


def test_predict_gives_the_model_output_on_the_independently_made_input(tmp_path: Path) -> None:
    flow = _training_features(tmp_path / "work")
    run = tmp_path / "run"
    assert cli(["train", str(flow), "--model", "offtanet", "-o", str(run), "--epochs", "1", "--device", "cpu", "-q"]) == 0
    clip = write_frames(tmp_path / "new", tight_clip(3, seed=7))
    got = predict_clip(run, frames=clip, onset=1, apex=3, device="cpu")

    x = torch.from_numpy(reference.features(clip / "reg_img1.png", clip / "reg_img3.png"))[None]
    rundir = RunDir.of(run)
    info = rundir.finished()
    probs = []
    for fold in info["folds"]:
        model = create_model("offtanet", num_classes=len(info["classes"]))
        model.load_state_dict(torch.load(rundir.final_weights(fold), map_location="cpu", weights_only=True))
        with torch.no_grad():
            probs.append(torch.softmax(model.eval()(x), 1)[0].numpy())
    expected = np.mean(probs, axis=0)
    assert got["models"] == len(info["folds"]) == 2
    np.testing.assert_allclose([got["probabilities"][c] for c in info["classes"]], expected, atol=1e-6)
