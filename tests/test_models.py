"""Every registered model: forward/backward on its declared input, FLOP counter, registry CLI.

Parametrized over ``list_models()``, so families added later are covered automatically.
A big model that registers a ``NAME-small`` sibling (same code, smaller configuration)
is exercised through the sibling in the default run, and itself only under ``-m slow``.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.models import ENCODINGS, SOURCE_KINDS, count_parameters, create_model, get_entry, list_models
from mertool.models.describe import summarize_model
from mertool.models.flops import count_flops, example_inputs
from mertool.models.layers import MatMul

OPTIMIZERS = {"adam", "adamw", "sgd"}


def _is_full_size(name: str, names: list[str]) -> bool:
    """A member of a family that has a ``FAMILY-small`` entry, but not itself a small one."""
    family = name.split("-")[0]
    return f"{family}-small" in names and "small" not in name.split("-")


def _params():
    names = list_models()
    return [pytest.param(n, marks=pytest.mark.slow) if _is_full_size(n, names) else n for n in names]


def _logits(out):
    """A model returns logits, or (logits, auxiliary_loss) in training."""
    if isinstance(out, tuple):
        assert len(out) == 2, "a model returns logits or (logits, auxiliary_loss)"
        logits, aux = out
        assert aux.dim() == 0 and torch.isfinite(aux), "auxiliary loss must be a finite scalar"
        return logits, aux
    return out, None


@pytest.mark.parametrize("name", _params())
def test_forward_backward(name):
    torch.manual_seed(0)
    entry = get_entry(name)
    model = create_model(name, num_classes=3).train()
    inputs = example_inputs(entry.input, batch=2)
    logits, aux = _logits(model(**inputs))
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    loss = F.cross_entropy(logits, torch.tensor([0, 2])) + (aux if aux is not None else 0)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, "model has no trainable parameters"
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without gradient (unused?): {missing[:5]}"
    bad = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)


@pytest.mark.parametrize("name", _params())
def test_head_size_eval_determinism_and_flops(name):
    entry = get_entry(name)
    model = create_model(name, num_classes=5).eval()
    inputs = example_inputs(entry.input, batch=2, seed=1)
    with torch.no_grad():
        a, _ = _logits(model(**inputs))
        b, _ = _logits(model(**inputs))
    assert a.shape == (2, 5)
    assert torch.equal(a, b), "eval mode must be deterministic (dropout off, BN frozen)"
    macs = count_flops(model, inputs, "macs").total
    # `mertool models` counts on the meta device (shapes only): same numbers as on the CPU.
    summary = summarize_model(name, num_classes=5)
    assert (summary.params, summary.flops) == (count_parameters(model), macs)
    # Hooks can only under-count: torch's own counter sees every conv/matmul (2 FLOPs per MAC).
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(**inputs)
    assert 0 < 2 * macs * inputs[next(iter(inputs))].shape[0] <= fc.get_total_flops()


@pytest.mark.parametrize("name", list_models())
def test_registry_entry_is_well_formed(name):
    e = get_entry(name)
    assert e.name == name and e.description
    assert e.input.stage and e.input.arrays
    for key, shape in e.input.arrays.items():
        assert key.isidentifier() and all(isinstance(s, int) and s > 0 for s in shape)
    d = e.defaults
    if "optimizer" in d:
        assert d["optimizer"] in OPTIMIZERS
    for key in ("lr", "lr_gamma"):
        if key in d:
            assert 0 < d[key] <= 1
    for key in ("batch_size", "epochs", "lr_step"):
        if key in d:
            assert isinstance(d[key], int) and d[key] > 0
    if "weight_decay" in d:
        assert d["weight_decay"] >= 0
    if "shuffle" in d:
        assert isinstance(d["shuffle"], bool)
    # Every recipe says where it comes from, and which input encoding it was made for.
    assert e.source.split(":", 1)[0] in SOURCE_KINDS
    assert e.encoding is None or e.encoding in ENCODINGS
    if e.input.stage != "flow":
        assert e.encoding is None, "only flow recipes have an encoding"


def test_unknown_model_suggests_close_names():
    with pytest.raises(MertoolError, match="did you mean offtanet"):
        get_entry("offtanett")


def test_importing_models_fills_the_registry_without_importing_train():
    """Families are imported explicitly; models/ never reaches up into train/ (no side effects)."""
    code = (
        "import sys, mertool.models as m; "
        "print(any(k.startswith('mertool.train') for k in sys.modules), *m.list_models())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
    # Every family's models, without asking for them (other tests may add their own models here).
    builtin = {n for n in list_models() if get_entry(n).builder.__module__.startswith("mertool.models.")}
    assert set(out[1:]) == builtin and {"offtanet", "ststnet", "dianet", "facesleuth"} <= builtin


def test_family_augmentations_are_plain_functions_named_in_defaults():
    """train/augment registers them by these names; the model files only define them."""
    from mertool.models.dianet import dynimg_fliprot
    from mertool.models.facesleuth import augment_pair

    assert get_entry("dianet").defaults["augment"] == "dynimg_fliprot"
    assert get_entry("facesleuth").defaults["augment"] == "facesleuth_pair"
    x = torch.randn(2, 2, 3, 16, 16)
    out = dynimg_fliprot({"dynimg": x, "aus": torch.ones(2, 21)}, torch.Generator().manual_seed(0))
    assert out["dynimg"].shape == x.shape and torch.equal(out["aus"], torch.ones(2, 21))
    pair = {"onset": torch.randn(2, 3, 16, 16), "apex": torch.randn(2, 3, 16, 16)}
    assert augment_pair(pair, torch.Generator().manual_seed(0))["apex"].shape == (2, 3, 16, 16)


def test_describe_models_text_and_raw_columns():
    from mertool.models.describe import describe_models

    cols, rows = describe_models(["ststnet", "dianet-small"], convention="torchstat")
    assert cols == ["model", "input", "params", "FLOPs (torchstat)", "encoding", "recipe source", "description"]
    assert rows[0][:3] == ["ststnet", "flow 3x28x28 [flow]", "1,683"]
    assert rows[0][4:6] == ["minmax-byte", get_entry("ststnet").source]
    assert rows[1][4:6] == ["-", "mertool: CPU preset"]
    cols, rows = describe_models(["ststnet"], flops=False, raw=True)
    assert cols[:8] == ["model", "stage", "input", "num_classes", "params", "flops_macs", "encoding", "source"]
    assert rows[0][:8] == ["ststnet", "flow", "flow 3x28x28 [flow]", 3, 1683, None, "minmax-byte",
                           get_entry("ststnet").source]


def test_flops_multihead_attention_against_torch_counter():
    from torch.utils.flop_counter import FlopCounterMode

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
            self.mm = MatMul()

        def forward(self, x):
            y, _ = self.attn(x, x, x)
            return self.mm(y, y.transpose(1, 2))

    m = Tiny()
    x = {"x": torch.randn(3, 10, 16)}
    ours = count_flops(m, x, "flops").total * 3  # per sample -> whole batch
    m.eval()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused eval kernel hides its matmuls
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(**x)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert ours == fc.get_total_flops()
    # hand count per sample: 4 projections 10x16x16, q kᵀ and attn v 10x10x16, y yᵀ 10x10x16
    assert count_flops(m, x, "macs").total == 4 * 10 * 16 * 16 + 3 * 10 * 10 * 16


def test_flops_bad_convention():
    with pytest.raises(ValueError, match="convention"):
        count_flops(create_model("ststnet", num_classes=3), {"flow": torch.randn(1, 3, 28, 28)}, "gflops")


# --- CLI -------------------------------------------------------------------------------------

def test_cli_models_table(capsys):
    assert cli(["models", "offtanet", "offapexnet", "ststnet", "--flops"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["model", "input", "params"]
    assert "recipe source" in lines[0] and "encoding" in lines[0]
    off = next(line for line in lines if line.startswith("offtanet"))
    assert "59,403" in off and "3x112x112" in off and "29.30M" in off
    assert "signed" in off and "authors' code: Off-TANet" in off
    st = next(line for line in lines if line.startswith("ststnet "))
    assert "minmax-byte" in st and "authors' code: STSTNet" in st
    assert "3-class head" in out


@pytest.mark.slow
def test_cli_models_lists_every_model(capsys):
    assert cli(["models", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert {line.split()[0] for line in out.splitlines()[1:] if line.strip()} >= set(list_models())


def test_cli_models_csv_and_markdown(capsys):
    assert cli(["models", "offtanet", "ststnet", "--convention", "torchstat", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["model"] for r in rows] == ["offtanet", "ststnet"]
    off = rows[0]
    assert off["params"] == "59403" and off["stage"] == "flow" and off["num_classes"] == "3"
    assert round(int(off["flops_torchstat"]) / 1e6, 2) == 30.08
    assert (off["encoding"], off["source"]) == ("signed", get_entry("offtanet").source)
    assert rows[1]["encoding"] == "minmax-byte" and rows[1]["source"].startswith("authors' code")
    assert cli(["models", "offtanet", "--num-classes", "5", "--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("| model |") and "59,533" in md  # 59,403 - 195 + (64*5 + 5)
    assert "| recipe source |" in md and "authors' code: Off-TANet" in md


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["models", "offtanett"], "did you mean offtanet"),
        (["models", "--convention", "gflops"], "--convention"),
        (["models", "--format", "xml"], "--format"),
        (["models", "--num-classes", "1"], "--num-classes"),
    ],
)
def test_cli_models_bad_input(capsys, argv, msg):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and "Traceback" not in err
