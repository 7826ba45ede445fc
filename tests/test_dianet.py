"""DIANet and its backbones: published parameter counts, checkpoint key maps, fusion,
consistency loss, ablation switches, bad input, and (slow) a LOSO run that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mertool.errors import MertoolError
from mertool.models import count_parameters, create_model, get_entry, list_models
from mertool.models import dianet as D
from mertool.models.backbones import (
    BACKBONES,
    TokenEncoder,
    build_backbone,
    load_backbone_weights,
    map_checkpoint,
)
from mertool.models.backbones import efficientnetv2 as E
from mertool.models.backbones import convnext as CN

SMALL_KW = dict(D.SMALL)


def small(**kw) -> D.DIANet:
    torch.manual_seed(0)
    return D.DIANet(3, **{**SMALL_KW, **kw})


def dyn(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 3, size, size, generator=g)


# --- backbones ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_backbones():
    return {name: build_backbone(name) for name in BACKBONES}


def test_backbone_parameter_counts_match_published_minus_classifier(full_backbones):
    # Published ImageNet counts (torchvision/timm) minus the 1000-class classifier.
    expected = {
        "efficientnetv2_s": 21_458_488 - (1280 * 1000 + 1000),
        "resnet18": 11_689_512 - (512 * 1000 + 1000),
        "convnext_tiny": 28_589_128 - (768 * 1000 + 1000),
        "mobilevit_s": 5_578_632 - (640 * 1000 + 1000),
        "mobilevit_xs": 2_317_848 - (384 * 1000 + 1000),
    }
    for name, n in expected.items():
        assert count_parameters(full_backbones[name]) == n, name


def test_resnet18_count_by_hand(full_backbones):
    def conv(cin, cout, k):
        return cin * cout * k * k

    def bn(c):
        return 2 * c

    n = conv(3, 64, 7) + bn(64)
    cin = 64
    for cout in (64, 128, 256, 512):
        for j in range(2):
            a = cin if j == 0 else cout
            n += conv(a, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)
            if a != cout:
                n += conv(a, cout, 1) + bn(cout)
        cin = cout
    assert count_parameters(full_backbones["resnet18"]) == n


def test_efficientnetv2_s_stage_layout(full_backbones):
    m = full_backbones["efficientnetv2_s"]
    stages = list(m.features)[1:-1]
    assert [len(s) for s in stages] == [2, 4, 4, 6, 9, 15]
    assert all(isinstance(b, E.FusedMBConv) for s in stages[:3] for b in s)
    assert all(isinstance(b, E.MBConv) for s in stages[3:] for b in s)
    # SE squeezes to a quarter of the block input: stage 4 first block 64 -> 16.
    se = stages[3][0].block[2]
    assert (se.fc1.in_channels, se.fc1.out_channels) == (256, 16)
    rates = [b.stochastic_depth.p for s in stages for b in s]
    assert rates[0] == 0 and rates == sorted(rates) and math.isclose(rates[-1], 0.2 * 39 / 40)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_small_backbones_forward_backward_and_tokens(name):
    torch.manual_seed(0)
    bb = build_backbone(name, width=0.25, depth=0.25)
    assert count_parameters(bb) < count_parameters(build_backbone(name, width=0.5, depth=0.5))
    enc = TokenEncoder(bb, 32)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    fmap = bb(x)
    assert fmap.shape == (2, bb.out_channels, 2, 2)  # stride 32
    tokens = enc(x)
    assert tokens.shape == (2, 4, 32)
    tokens.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # embedding = mean token = projection of the pooled map (the map is linear)
    enc.eval()
    with torch.no_grad():
        assert torch.allclose(enc(x).mean(1), enc.proj(bb(x).mean((2, 3))), atol=1e-5)


def test_mobilevit_handles_sizes_not_multiple_of_patch():
    bb = build_backbone("mobilevit_xs", width=0.25, depth=0.25).eval()
    assert bb(torch.randn(1, 3, 96, 96)).shape[-2:] == (3, 3)  # 3x3 map -> resized for 2x2 patches


def test_unknown_backbone_and_bad_multiplier():
    with pytest.raises(MertoolError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="width"):
        build_backbone("resnet18", width=0)


# --- checkpoint key maps ---------------------------------------------------------------

def _timm_effnetv2_s_keys() -> dict[str, tuple]:
    """timm tf_efficientnetv2_s tensor names and shapes, written from its layout."""
    keys: dict[str, tuple] = {}

    def conv(name, cout, cin, k, groups=1, bias=False):
        keys[f"{name}.weight"] = (cout, cin // groups, k, k)
        if bias:
            keys[f"{name}.bias"] = (cout,)

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.{p}"] = (c,)
        keys[f"{name}.num_batches_tracked"] = ()

    conv("conv_stem", 24, 3, 3)
    bn("bn1", 24)
    for s, (kind, e, k, stride, cin, cout, n) in enumerate(E.S_STAGES):
        for b in range(n):
            a = cin if b == 0 else cout
            p = f"blocks.{s}.{b}"
            if kind == "fused" and e == 1:
                conv(f"{p}.conv", cout, a, k)
                bn(f"{p}.bn1", cout)
            elif kind == "fused":
                conv(f"{p}.conv_exp", a * e, a, k)
                bn(f"{p}.bn1", a * e)
                conv(f"{p}.conv_pwl", cout, a * e, 1)
                bn(f"{p}.bn2", cout)
            else:
                conv(f"{p}.conv_pw", a * e, a, 1)
                bn(f"{p}.bn1", a * e)
                conv(f"{p}.conv_dw", a * e, a * e, k, groups=a * e)
                bn(f"{p}.bn2", a * e)
                conv(f"{p}.se.conv_reduce", a // 4, a * e, 1, bias=True)
                conv(f"{p}.se.conv_expand", a * e, a // 4, 1, bias=True)
                conv(f"{p}.conv_pwl", cout, a * e, 1)
                bn(f"{p}.bn3", cout)
    conv("conv_head", 1280, 256, 1)
    bn("bn2", 1280)
    keys["classifier.weight"], keys["classifier.bias"] = (1000, 1280), (1000,)
    return keys


def test_timm_efficientnetv2_map_is_a_shape_preserving_bijection(full_backbones):
    model = full_backbones["efficientnetv2_s"]
    own = model.state_dict()
    names = _timm_effnetv2_s_keys()
    mapped = {k: E.timm_to_mertool(k, model) for k in names}
    assert mapped["classifier.weight"] is None
    targets = [v for v in mapped.values() if v is not None]
    assert sorted(targets) == sorted(own)  # every tensor exactly once
    for k, v in mapped.items():
        if v is not None:
            assert tuple(own[v].shape) == names[k], (k, v)
    # load such a checkpoint: values land where the map says
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=g) if s else torch.tensor(7)) for k, s in names.items()}
    fresh = build_backbone("efficientnetv2_s")
    load_backbone_weights(fresh, "efficientnetv2_s", state)  # layout auto-detected
    got = fresh.state_dict()
    assert torch.equal(got["features.4.0.block.2.fc1.weight"], state["blocks.3.0.se.conv_reduce.weight"])
    assert torch.equal(got["features.1.1.block.0.1.running_var"], state["blocks.0.1.bn1.running_var"])
    assert torch.equal(got["features.7.0.weight"], state["conv_head.weight"])


def test_torchvision_efficientnetv2_known_keys(full_backbones):
    own = full_backbones["efficientnetv2_s"].state_dict()
    # a few names and shapes of torchvision's efficientnet_v2_s state_dict
    known = {
        "features.0.0.weight": (24, 3, 3, 3),
        "features.1.0.block.0.0.weight": (24, 24, 3, 3),
        "features.2.0.block.0.0.weight": (96, 24, 3, 3),
        "features.2.0.block.1.0.weight": (48, 96, 1, 1),
        "features.4.0.block.0.0.weight": (256, 64, 1, 1),
        "features.4.0.block.1.0.weight": (256, 1, 3, 3),
        "features.4.0.block.2.fc1.weight": (16, 256, 1, 1),
        "features.6.14.block.3.1.running_mean": (256,),
        "features.7.0.weight": (1280, 256, 1, 1),
    }
    for k, shape in known.items():
        assert tuple(own[k].shape) == shape, k


def test_convnext_timm_and_torchvision_maps(full_backbones):
    model = full_backbones["convnext_tiny"]
    own = model.state_dict()
    tv = {("norm." + k[5:] if k.startswith("norm.") else k): v for k, v in own.items()}
    tv = {("classifier.0." + k[5:] if k.startswith("norm.") else k): v for k, v in tv.items()}
    tv["classifier.2.weight"] = torch.zeros(1000, 768)
    assert set(map_checkpoint(model, "convnext_tiny", tv, "torchvision")) == set(own)
    cases = {
        "stem.0.weight": ("features.0.0.weight", (96, 3, 4, 4)),
        "stages.1.downsample.1.weight": ("features.2.1.weight", (192, 96, 2, 2)),
        "stages.2.blocks.8.mlp.fc1.weight": ("features.5.8.block.3.weight", (1536, 384)),
        "stages.3.blocks.2.gamma": ("features.7.2.layer_scale", (768, 1, 1)),
        "head.norm.weight": ("norm.weight", (768,)),
    }
    for timm_key, (ours, shape) in cases.items():
        assert CN.timm_to_mertool(timm_key, model) == ours
        assert tuple(own[ours].shape) == shape
    assert CN.timm_to_mertool("head.fc.weight", model) is None


def test_torchvision_layout_file_roundtrip_and_errors(tmp_path):
    torch.manual_seed(1)
    src = build_backbone("resnet18", width=0.25, depth=0.25).eval()
    state = {**src.state_dict(), "fc.weight": torch.zeros(1000, 128), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    torch.manual_seed(2)
    dst = build_backbone("resnet18", width=0.25, depth=0.25).eval()
    x = torch.randn(2, 3, 64, 64)
    assert not torch.allclose(src(x), dst(x))
    load_backbone_weights(dst, "resnet18", path)
    assert torch.allclose(src(x), dst(x))
    with pytest.raises(MertoolError, match="not found"):
        load_backbone_weights(dst, "resnet18", tmp_path / "nope.pth")
    wrong = build_backbone("resnet18", width=0.5, depth=0.25)
    with pytest.raises(MertoolError, match="does not fit"):
        load_backbone_weights(wrong, "resnet18", path)
    partial = {k: v for k, v in state.items() if "layer4" not in k}
    with pytest.raises(MertoolError, match="missing"):
        load_backbone_weights(dst, "resnet18", partial)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MertoolError, match="not a loadable"):
        load_backbone_weights(dst, "resnet18", junk)


def test_dianet_pretrained_loads_both_streams(tmp_path):
    torch.manual_seed(3)
    src = build_backbone("resnet18", width=0.25, depth=0.25)
    path = tmp_path / "bb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    m = small(backbone="resnet18", pretrained=path)
    for enc in m.encoders:
        assert torch.equal(enc.backbone.conv1.weight, src.conv1.weight)
    # create_model(weights=...) also accepts a backbone checkpoint (model.load_weights)
    m2 = create_model("dianet-small-resnet18", num_classes=3, weights=path)
    assert torch.equal(m2.encoders[1].backbone.layer4[0].conv2.weight, src.layer4[0].conv2.weight)


# --- consistency loss --------------------------------------------------------------------

def test_consistency_loss_closed_forms():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, 16, generator=g)
    lam = 0.3
    assert D.consistency_loss(f, f, lam).abs() < 1e-6
    assert D.consistency_loss(f, 2.5 * f, lam).abs() < 1e-6  # scale-free
    assert torch.isclose(D.consistency_loss(f, -f, lam), torch.tensor(2 * lam))
    e = torch.eye(4)  # orthogonal pairs: cos 0 -> lambda
    assert torch.isclose(D.consistency_loss(e, e.roll(1, 0), lam), torch.tensor(lam))
    # mixed batch: mean of per-sample terms (0, 2, 1) -> lambda
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    assert torch.isclose(D.consistency_loss(a, b, lam), torch.tensor(lam))
    with pytest.raises(ValueError):
        D.consistency_loss(f, f[:, :8])


def test_training_forward_returns_weighted_consistency_of_stream_embeddings():
    m = small(drop_path=0.0, dropout=0.0, consistency=0.7).train()
    x = dyn()
    torch.manual_seed(5)
    logits, aux = m(x)
    feats = m.features(x)  # same batch statistics in training mode, no randomness left
    want = 0.7 * (1 - F.cosine_similarity(feats["f1"], feats["f2"], dim=1)).mean()
    assert logits.shape == (2, 3) and torch.isclose(aux, want, atol=1e-6)
    assert not isinstance(m.eval()(x), tuple)  # eval: logits only
    assert not isinstance(small(consistency=0.0).train()(x), tuple)  # switch off
    assert small(phases="onset").consistency == 0.0


# --- fusion and streams ------------------------------------------------------------------

def test_cross_attention_output_depends_on_both_streams():
    torch.manual_seed(0)
    fuse = D.CrossAttentionFusion(32, 4).eval()
    t1, t2 = torch.randn(2, 4, 32), torch.randn(2, 6, 32)
    a1, a2 = fuse(t1, t2)
    b1, b2 = fuse(t1, t2 + torch.randn_like(t2))  # perturb the offset stream only
    assert not torch.allclose(a1, b1, atol=1e-4)  # onset's fused tokens see the offset stream
    c1, c2 = fuse(t1 + torch.randn_like(t1), t2)
    assert not torch.allclose(a2, c2, atol=1e-4)
    # and through the whole model, from the input images
    m = small().eval()
    x = dyn()
    y = x.clone()
    y[:, 1] += torch.randn_like(y[:, 1])
    with torch.no_grad():
        fa, fb = m.features(x), m.features(y)
    assert torch.allclose(fa["f1"], fb["f1"])  # the onset stream itself is untouched ...
    assert not torch.allclose(fa["a1"], fb["a1"], atol=1e-4)  # ... its fused output is not


def test_swapping_streams_changes_prediction_unless_weights_shared_and_fusion_symmetric():
    x = dyn(seed=4)
    swapped = x[:, [1, 0]]
    with torch.no_grad():
        m = small().eval()
        assert not torch.allclose(m(x), m(swapped), atol=1e-4)
        # control: shared encoder + sum fusion is symmetric, so the same check must pass equal
        sym = small(share_backbone=True, fusion="sum").eval()
        assert torch.allclose(sym(x), sym(swapped), atol=1e-5)


def test_simple_attention_matches_hand_formula():
    t1, t2 = torch.randn(1, 3, 8), torch.randn(1, 5, 8)
    a1, _ = D.SimpleAttentionFusion()(t1, t2)
    w = torch.softmax(t1[0] @ t2[0].T / math.sqrt(8), dim=1)
    assert torch.allclose(a1[0], t1[0] + w @ t2[0], atol=1e-5)


def test_ablation_switches_do_what_they_say():
    x = dyn()
    full = small()
    assert len(full.encoders) == 2 and isinstance(full.fuse, D.CrossAttentionFusion)
    shared = small(share_backbone=True)
    assert len(shared.encoders) == 1
    assert count_parameters(shared) < count_parameters(full)
    for fusion, in_features in (("concat", 2 * 64), ("sum", 64), ("cross", 2 * 64), ("simple", 2 * 64)):
        assert small(fusion=fusion).project.in_features == in_features
    assert small(fusion="concat").fuse is None
    assert count_parameters(small(fusion="simple").fuse) == 0
    # single phase: one stream, the offset phase is ignored entirely
    onset = small(phases="onset").eval()
    y = x.clone()
    y[:, 1] = torch.randn_like(y[:, 1])
    with torch.no_grad():
        assert torch.equal(onset(x), onset(y))
        assert torch.equal(onset(x), onset(x[:, :1]))  # also accepts a one-phase file
        off = small(phases="offset").eval()
        assert not torch.equal(off(x), off(y))
    vec = small(tokens="vector")
    assert all(t.shape[1] == 1 for t in vec.stream_tokens(x))
    assert small(backbone="convnext").backbone_name == "convnext_tiny"


def test_registry_covers_every_backbone_and_switch():
    names = set(list_models())
    presets = {n for n in names if n.startswith("dianet")}
    assert {"dianet", "dianet-small"} <= presets
    assert {f"dianet-small-{s}" for s in D.ABLATIONS if s} <= presets
    built = {n: create_model(n, num_classes=4) for n in sorted(presets - {"dianet"})}
    backbones = {m.backbone_name for m in built.values()}
    assert backbones >= {"efficientnetv2_s", "resnet18", "convnext_tiny", "mobilevit_s"}
    assert {m.fusion for m in built.values()} == set(D.FUSIONS)
    assert {m.phases for m in built.values()} >= {"both", "onset"}
    assert {m.consistency > 0 for m in built.values()} == {True, False}
    assert {len(m.encoders) for m in built.values()} == {1, 2}
    for n in presets:
        e = get_entry(n)
        assert e.input.stage == "dynimg" and e.input.arrays["dynimg"][:2] == (2, 3)
        assert e.defaults["augment"] == "dynimg_fliprot"
    d = get_entry("dianet").defaults
    assert (d["optimizer"], d["lr"], d["batch_size"], d["epochs"], d["min_class_samples"]) == ("adam", 1e-4, 32, 50, 10)
    assert get_entry("dianet").input.arrays["dynimg"] == (2, 3, 224, 224)


def test_full_dianet_parameter_count_closed_form():
    m = create_model("dianet", num_classes=5)
    bb = 21_458_488 - 1_281_000
    enc = bb + 1280 * 512 + 512
    fuse = 2 * (4 * (512 * 512 + 512) + 2 * 512)  # q, k, v, out per direction + LayerNorm
    head = (1024 * 512 + 512) + (512 * 256 + 256) + (256 * 5 + 5)
    assert count_parameters(m) == 2 * enc + fuse + head


def test_bad_input_and_options():
    m = small().eval()
    with pytest.raises(MertoolError, match="N x P x C x H x W"):
        m(torch.randn(2, 3, 64, 64))
    with pytest.raises(MertoolError, match="two phases"):
        m(torch.randn(2, 1, 3, 64, 64))
    with pytest.raises(MertoolError, match="DI-Offset"):
        small(phases="offset")(torch.randn(2, 1, 3, 64, 64))
    for kw, msg in ((dict(fusion="max"), "fusion must be"), (dict(phases="apex"), "phases must be"),
                    (dict(tokens="grid"), "tokens must be"), (dict(consistency=-1.0), ">= 0"),
                    (dict(heads=5), "divisible"), (dict(backbone="vgg"), "unknown backbone")):
        with pytest.raises(MertoolError, match=msg):
            small(**kw)
    with pytest.raises(MertoolError, match="2 classes"):
        D.DIANet(1, **SMALL_KW)


def test_augmentation_same_transform_on_both_phases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 3, 16, 16)
    x[:, 1] = x[:, 0]
    out = D.augment_dynimg(x, generator=g)
    assert torch.allclose(out[:, 0], out[:, 1])
    # without rotation every sample is itself or its mirror image
    flat = D.augment_dynimg(x, max_degrees=0.0, generator=torch.Generator().manual_seed(1))
    for i in range(len(x)):
        assert torch.allclose(flat[i], x[i], atol=1e-5) or torch.allclose(flat[i], x[i].flip(-1), atol=1e-5)
    seen = {bool(torch.allclose(flat[i], x[i], atol=1e-5)) for i in range(len(x))}
    assert seen == {True, False}
    same = D.dynimg_fliprot({"dynimg": x}, torch.Generator().manual_seed(2))["dynimg"]
    again = D.dynimg_fliprot({"dynimg": x}, torch.Generator().manual_seed(2))["dynimg"]
    assert torch.equal(same, again)  # the fold's generator makes it reproducible


# --- slow: LOSO on tiny synthetic dynamic images ------------------------------------------

def _synthetic_dynimg(path, subjects=5, per_class=6, size=64, seed=0):
    """Dynamic images whose class is where the motion is (brows / mouth / nose), with
    subject-specific texture, amplitude and position jitter; DI-Offset mirrors DI-Onset
    in sign (the face relaxes) with a different amplitude."""
    from mertool.stages.stagefile import StageWriter

    rng = np.random.default_rng(seed)
    centres = {"brow": (0.3, 0.5), "mouth": (0.75, 0.5), "nose": (0.55, 0.5)}
    yy, xx = np.mgrid[0:size, 0:size] / size
    w = StageWriter(path, stage="dynimg", params={"synthetic": seed})
    order = []
    for s in range(subjects):
        texture = rng.normal(0, 0.3, (3, size, size))
        for label, (cy, cx) in centres.items():
            for k in range(per_class):
                dy, dx = rng.normal(0, 0.04, 2)
                amp = rng.uniform(0.6, 1.4)
                blob = np.exp(-(((yy - cy - dy) ** 2) + ((xx - cx - dx) * 0.6) ** 2) / 0.006)
                on = texture + amp * blob + rng.normal(0, 0.3, (3, size, size))
                off = texture - rng.uniform(0.4, 1.0) * amp * blob + rng.normal(0, 0.3, (3, size, size))
                sid = f"s{s}_{label}_{k}"
                w.add(sid, {"dynimg": np.stack([on, off]).astype(np.float32)},
                      {"sample_id": sid, "subject": f"s{s}", "label": label, "dataset": "synth"})
                order.append(sid)
    return w.finish(order, stacked=True)


@pytest.mark.slow
def test_loso_dianet_small_learns_above_chance(tmp_path):
    from mertool.train.config import TrainConfig
    from mertool.train.run import train_run

    feats = _synthetic_dynimg(tmp_path / "dynimg.h5")
    cfg = TrainConfig(model="dianet-small", epochs=12, batch_size=16, device="cpu", seed=0)
    m = train_run(feats, tmp_path / "run", cfg, progress=False).metrics
    print({k: m[k] for k in ("accuracy", "uf1", "uar")})
    assert m["n_folds"] == 5 and m["n_samples"] == 90
    assert m["accuracy"] > 0.6 and m["uf1"] > 0.55  # chance is 1/3
