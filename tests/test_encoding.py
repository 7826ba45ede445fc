"""Flow encodings: mirroring per encoding (vs hand computations), and train refusing mismatched inputs."""

from __future__ import annotations

import csv
import dataclasses

import cv2
import numpy as np
import pytest
import torch

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.models import get_entry
from mertool.preprocess.strain import normalise_flow
from mertool.stages.contents import ENCODINGS, HOW_TO_MAKE, NORMALISE_ENCODING
from mertool.stages.importer import import_flow
from mertool.stages.stagefile import StageWriter
from mertool.train import tasks as run_mod  # where the features are loaded for a model
from mertool.train.augment import MIRROR_U, augment_for, get_augment
from mertool.train.data import load_train_data
from train_fixtures import TINY, TINY_SIZE, ensure_tiny, synthetic_flow

ensure_tiny()


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def test_one_list_of_encodings():
    # the registry's and the stage files' names must be the same ones
    assert set(ENCODINGS) == set(MIRROR_U) == set(HOW_TO_MAKE)
    assert set(NORMALISE_ENCODING.values()) == set(ENCODINGS)


def test_minmax_of_mirrored_u_is_one_minus_mirrored_minmax():
    # Mirroring a face maps u(x) to -u(W-1-x). Per-image min-max of -u swaps min and max:
    # (-u + max u) / (max u - min u) = 1 - (u - min u) / (max u - min u), exactly.
    u = np.random.default_rng(0).normal(size=(9, 11))
    mirrored = -u[:, ::-1]
    np.testing.assert_allclose(_minmax(mirrored), 1 - _minmax(u)[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(255 * _minmax(mirrored), 255 - 255 * _minmax(u)[:, ::-1], atol=1e-9)
    # through mertool's own min-max normalisation of (u, v, strain)
    x = np.random.default_rng(1).normal(size=(3, 8, 8)).astype(np.float32)
    x[2] = np.abs(x[2])
    flipped_raw = np.stack([-x[0, :, ::-1], x[1, :, ::-1], x[2, :, ::-1]])
    got = flow_hflip_all(torch.from_numpy(normalise_flow(x, "minmax"))[None], "minmax-unit")[0].numpy()
    np.testing.assert_allclose(got, normalise_flow(flipped_raw, "minmax"), atol=1e-6)


def flow_hflip_all(flow: torch.Tensor, encoding: str) -> torch.Tensor:
    """flow_hflip on a batch, with the flip drawn for every sample (generator state chosen so)."""
    aug = augment_for("flow_hflip", encoding)
    for seed in range(100):
        if (torch.rand(len(flow), generator=torch.Generator().manual_seed(seed)) < 0.5).all():
            return aug({"flow": flow}, torch.Generator().manual_seed(seed))["flow"]
    raise AssertionError("no seed flips every sample")


@pytest.mark.parametrize(
    "encoding, u, mirrored_u",
    [
        ("signed", [[-1.5, 0.0, 2.0]], [[-2.0, 0.0, 1.5]]),           # -u
        ("minmax-unit", [[0.0, 0.25, 1.0]], [[0.0, 0.75, 1.0]]),       # 1 - u
        ("minmax-byte", [[10.0, 200.0, 255.0]], [[0.0, 55.0, 245.0]]),  # 255 - u
    ],
)
def test_flow_hflip_per_encoding_by_hand(encoding, u, mirrored_u):
    v, strain = [[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]
    flow = torch.tensor([[u, v, strain]])  # 1 x 3 x 1 x 3
    out = flow_hflip_all(flow, encoding)
    assert out[0, 0].tolist() == mirrored_u
    assert out[0, 1].tolist() == [[3.0, 2.0, 1.0]] and out[0, 2].tolist() == [[6.0, 5.0, 4.0]]
    # samples the generator leaves alone are unchanged
    batch = torch.tensor([[u, v, strain]] * 8)
    gen_seed = 5
    mask = torch.rand(8, generator=torch.Generator().manual_seed(gen_seed)) < 0.5
    got = augment_for("flow_hflip", encoding)({"flow": batch}, torch.Generator().manual_seed(gen_seed))["flow"]
    assert 0 < mask.sum() < 8
    for i in range(8):
        assert torch.equal(got[i], out[0] if mask[i] else batch[i])


def test_augment_for_refuses_flow_it_cannot_mirror():
    for encoding in ("unknown", None):
        with pytest.raises(MertoolError, match="'flow_hflip' cannot mirror flow of encoding"):
            augment_for("flow_hflip", encoding)
    assert augment_for("hflip", None) is get_augment("hflip")  # other augmentations ignore the encoding


def _labels(path, n):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "subject", "label"])
        w.writerows([[f"c{k}", f"s{k % 4}", "abc"[k % 3]] for k in range(n)])
    return path


def _byte_images(tmp_path, size, n=12):
    """Composite-style 8-bit u/v/strain images, imported at 0..255 (minmax-byte)."""
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        cv2.imwrite(str(src / f"c{k}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return import_flow(src, _labels(tmp_path / "l.csv", n), tmp_path / "byte.h5", channels="strain,v,u",
                       progress=False).path


def test_load_refuses_a_mismatched_encoding(tmp_path):
    path = _byte_images(tmp_path, 28)
    spec = get_entry("offapexnet").input
    with pytest.raises(MertoolError) as err:
        load_train_data(path, spec, model="offapexnet", encoding="signed")
    msg = str(err.value)
    assert msg.startswith(f"{path}: flow encoded minmax-byte, but model 'offapexnet' expects signed; ")
    assert HOW_TO_MAKE["signed"] in msg and "\n" not in msg
    data = load_train_data(path, spec, model="offapexnet", encoding="minmax-byte")
    assert data.encoding == "minmax-byte" and data.subset(np.array([1, 0])).encoding == "minmax-byte"
    assert load_train_data(path, spec, model="offapexnet").encoding == "minmax-byte"  # None accepts any


def test_unrecorded_encoding_warns(tmp_path, caplog):
    x, labels, subjects = synthetic_flow(size=28)
    w = StageWriter(tmp_path / "old.h5", "flow", {"source": "import", "size": 0})  # an import made before encodings
    for i in range(len(x)):
        w.add(f"c{i}", {"flow": x[i]}, {"label": labels[i], "subject": subjects[i]})
    path = w.finish([f"c{i}" for i in range(len(x))], stacked=True)
    data = load_train_data(path, get_entry("offapexnet").input, model="offapexnet", encoding="signed")
    assert data.encoding == "unknown" and "flow encoding not recorded; model 'offapexnet' expects signed" in caplog.text


def test_train_refuses_mismatch_and_unmirrorable_flow(tmp_path, capsys, monkeypatch):
    path = _byte_images(tmp_path, TINY_SIZE)
    quick = ["--model", TINY, "--epochs", "1", "-q", "--device", "cpu"]
    entry = get_entry(TINY)
    spec = dataclasses.replace(entry.input, encoding="signed")  # the model's input, made for signed flow
    monkeypatch.setattr(run_mod, "get_entry", lambda name: dataclasses.replace(entry, input=spec))
    rc = cli(["train", str(path), *quick, "-o", str(tmp_path / "r1")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1 and not (tmp_path / "r1").exists()
    assert f"{path}: flow encoded minmax-byte, but model '{TINY}' expects signed; make its features with" in errors[0]
    # a model made for these inputs trains, and flow_hflip mirrors them as 255 - u
    spec = dataclasses.replace(entry.input, encoding="minmax-byte")  # the model's input, made for minmax-byte flow
    monkeypatch.setattr(run_mod, "get_entry", lambda name: dataclasses.replace(entry, input=spec))
    assert cli(["train", str(path), *quick, "--augment", "flow_hflip", "-o", str(tmp_path / "r2")]) == 0
    # flow whose encoding is not recorded cannot be mirrored: refused before any fold
    monkeypatch.setattr(run_mod, "get_entry", lambda name: entry)
    x, labels, subjects = synthetic_flow()
    w = StageWriter(tmp_path / "old.h5", "flow", {"source": "import"})
    for i in range(len(x)):
        w.add(f"c{i}", {"flow": x[i]}, {"label": labels[i], "subject": subjects[i]})
    old = w.finish([f"c{i}" for i in range(len(x))], stacked=True)
    rc = cli(["train", str(old), *quick, "--augment", "flow_hflip", "-o", str(tmp_path / "r3")])
    assert rc == 1 and "'flow_hflip' cannot mirror flow of encoding unknown" in capsys.readouterr().err
    assert not (tmp_path / "r3").exists()
