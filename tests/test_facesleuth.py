"""FaceSleuth: CVA/SOA attention, Swin FPF, variants, augmentation and engine hooks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from mertool.errors import MertoolError
from mertool.models import count_parameters, get_entry, list_models
from mertool.models.attention import DirectionalAttentionBlock, line_weights, oriented_pool, reduction_width
from mertool.models.facesleuth import DEFAULTS, VARIANTS, FaceSleuth, augment_pair, pair_affine, transform_pair
from mertool.models.swin import (
    SwinBlock,
    SwinTransformer,
    map_swin_checkpoint,
    relative_position_index,
)

CH, ST = (8, 16, 16, 24), (1, 2, 2, 2)


def _pair(b: int = 2, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    onset = torch.randint(0, 256, (b, 3, size, size), generator=g).float()
    apex = (onset + torch.randint(-20, 21, onset.shape, generator=g)).clamp(0, 255)
    aus = (torch.rand(b, 21, generator=g) < 0.2).float()
    return onset, apex, aus


# ----------------------------------------------------------------------- SOA geometry
def test_line_weights_are_rows_at_90_and_columns_at_0():
    h, w = 5, 5
    rows = line_weights(torch.tensor(math.pi / 2), h, w, h)
    cols = line_weights(torch.tensor(0.0), h, w, w)
    yy, xx = np.mgrid[0:h, 0:w]
    np.testing.assert_allclose(rows.numpy(), np.eye(h)[yy.reshape(-1)], atol=1e-6)
    np.testing.assert_allclose(cols.numpy(), np.eye(w)[xx.reshape(-1)], atol=1e-6)


def test_line_weights_oblique_hand_example():
    # 3x3 at 45 deg: projection (x + y)/sqrt2 rescaled so the corners hit bins 0 and 2;
    # pixel (x=1, y=0) projects half-way between bin 0 and bin 1 -> split 0.5 / 0.5.
    wts = line_weights(torch.tensor(math.pi / 4), 3, 3, 3).numpy()
    np.testing.assert_allclose(wts.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(wts[0], [1, 0, 0], atol=1e-6)  # top-left corner
    np.testing.assert_allclose(wts[8], [0, 0, 1], atol=1e-6)  # bottom-right corner
    np.testing.assert_allclose(wts[4], [0, 1, 0], atol=1e-6)  # centre
    np.testing.assert_allclose(wts[1], [0.5, 0.5, 0], atol=1e-6)  # (x=1, y=0)
    np.testing.assert_allclose(wts[2], [0, 1, 0], atol=1e-6)  # (x=2, y=0): anti-diagonal = middle line


def test_oriented_pool_at_90_is_row_mean():
    x = torch.randn(2, 3, 6, 6)
    pooled = oriented_pool(x, line_weights(torch.tensor(math.pi / 2), 6, 6, 6))
    torch.testing.assert_close(pooled, x.mean(3, keepdim=True), atol=1e-6, rtol=1e-5)


def test_reduction_width():
    assert reduction_width(64) == 8 and reduction_width(512) == 16 and reduction_width(1024) == 32


def _copied(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    result = dst.load_state_dict(src.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith("block.thetas") or k.startswith("thetas") for k in result.missing_keys)


@pytest.mark.parametrize("train_mode", [False, True])
def test_soa_at_90_equals_cva_same_weights(train_mode):
    torch.manual_seed(0)
    cva = DirectionalAttentionBlock(8, CH, ST, mode="y")
    soa = DirectionalAttentionBlock(8, CH, ST, mode="soa", theta_init=90.0)
    for p in cva.parameters():  # make BN/bias non-trivial so equality is not vacuous
        p.data.add_(0.1 * torch.randn_like(p))
    _copied(cva, soa)
    cva.train(train_mode), soa.train(train_mode)
    x = torch.randn(3, 8, 32, 32)
    a, b = cva(x), soa(x)
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_soa_at_90_close_to_cva_under_bf16_autocast():
    """Bin positions stay float32 under autocast, so bf16 runs (GPU AMP) keep the equivalence."""
    torch.manual_seed(0)
    cva = DirectionalAttentionBlock(8, CH, ST, mode="y")
    soa = DirectionalAttentionBlock(8, CH, ST, mode="soa", theta_init=90.0)
    _copied(cva, soa)
    x = torch.randn(2, 8, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = cva(x).float(), soa(x).float()
    assert (a - b).abs().max() < 0.03 * a.abs().max()


def test_soa_at_0_equals_x_variant():
    torch.manual_seed(1)
    xv = DirectionalAttentionBlock(8, CH, ST, mode="x")
    soa = DirectionalAttentionBlock(8, CH, ST, mode="soa", theta_init=0.0)
    _copied(xv, soa)
    x = torch.randn(2, 8, 32, 32)
    torch.testing.assert_close(xv(x), soa(x), atol=1e-5, rtol=1e-4)
    # ... and the two axes really differ (the test above is not vacuous).
    yv = DirectionalAttentionBlock(8, CH, ST, mode="y")
    _copied(xv, yv)
    assert (yv(x) - xv(x)).abs().max() > 1e-4


def test_full_model_soa90_equals_cva():
    torch.manual_seed(2)
    cva = FaceSleuth(5, attention="cva", preset="small").eval()
    soa = FaceSleuth(5, attention="soa", theta_init=90.0, preset="small").eval()
    _copied(cva, soa)
    onset, apex, aus = _pair()
    torch.testing.assert_close(cva(onset, apex, aus), soa(onset, apex, aus), atol=1e-4, rtol=1e-4)


def test_continuous_differs_from_independent():
    torch.manual_seed(3)
    cont = DirectionalAttentionBlock(8, CH, ST, mode="y", continuous=True)
    ind = DirectionalAttentionBlock(8, CH, ST, mode="y", continuous=False)
    res = ind.load_state_dict(cont.state_dict(), strict=False)
    assert all(".prev." in k for k in res.unexpected_keys) and res.unexpected_keys
    x = torch.randn(2, 8, 32, 32)
    assert (cont(x) - ind(x)).abs().max() > 1e-4


@pytest.mark.parametrize("theta", ["shared", "independent"])
def test_gradient_reaches_theta(theta):
    torch.manual_seed(4)
    m = FaceSleuth(3, theta=theta, preset="small")
    onset, apex, aus = _pair(4)
    loss = torch.nn.functional.cross_entropy(m(onset, apex, aus), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    thetas = m.theta_parameters()
    assert len(thetas) == (1 if theta == "shared" else 4)
    for t in thetas:
        assert t.grad is not None and torch.isfinite(t.grad) and t.grad.abs() > 0
    # finite-difference check of d loss / d theta (shared angle, eval mode = fixed BN stats)
    if theta == "shared":
        m.eval()
        t = thetas[0]
        t.grad = None
        f = lambda: torch.nn.functional.cross_entropy(m(onset, apex, aus), torch.tensor([0, 1, 2, 0]))  # noqa: E731
        f().backward()
        analytic = float(t.grad)
        with torch.no_grad():
            base = t.item()
            t.fill_(base + 1e-3)
            up = float(f())
            t.fill_(base - 1e-3)
            down = float(f())
            t.fill_(base)
        numeric = (up - down) / 2e-3
        assert analytic == pytest.approx(numeric, rel=0.1, abs=1e-4)


def test_frozen_theta_is_not_trained():
    m = FaceSleuth(3, theta="frozen", theta_init=0.0, preset="small")
    assert m.theta_parameters() == []
    assert m.angles() == [0.0] * 4
    onset, apex, aus = _pair()
    m(onset, apex, aus).sum().backward()
    assert m.block.thetas[0].grad is None


# ----------------------------------------------------------------------- variants
SMALL_B = 3


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_forward_backward_small(name):
    kwargs = {**VARIANTS[name][0], "preset": "small"}
    torch.manual_seed(5)
    m = FaceSleuth(4, **kwargs)
    onset, apex, aus = _pair(SMALL_B)
    out = m(onset, apex, aus if m.use_au else None)
    assert out.shape == (SMALL_B, 4) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert m.features(onset, apex).shape == (SMALL_B, 64, 4, 4)


def test_registry_covers_all_variants():
    names = set(list_models())
    assert set(VARIANTS) <= names
    for name in VARIANTS:
        entry = get_entry(name)
        size = 64 if name == "facesleuth-small" else 224
        assert entry.input.stage == "pairs"
        assert entry.input.arrays == {"onset": (3, size, size), "apex": (3, size, size)}
        assert entry.input.meta == (() if VARIANTS[name][0].get("use_au") is False else ("aus",))
        assert entry.defaults == DEFAULTS
    assert DEFAULTS["lr"] == 8e-4 and DEFAULTS["weight_decay"] == 0.6 and DEFAULTS["epochs"] == 75
    assert DEFAULTS["batch_size"] == 16 and DEFAULTS["accumulate"] == 2 and DEFAULTS["optimizer"] == "adamw"


def test_parameter_differences_between_variants():
    n = {k: count_parameters(FaceSleuth(5, **{**kw, "preset": "small"})) for k, (kw, _) in VARIANTS.items()}
    base = n["facesleuth-cva"]
    assert n["facesleuth"] - base == 1  # one shared angle
    assert n["facesleuth-soa-independent"] - base == 4  # one angle per module
    assert n["facesleuth-soa-frozen0"] == base  # frozen angle is a non-trainable parameter
    assert n["facesleuth-cva-x"] == base
    assert base - n["facesleuth-cva-noau"] == 21 * (2 + 5)  # BN weight+bias and 5 FC weights per AU input
    assert n["facesleuth-cva-nofpf"] < base


def test_bad_options_raise():
    with pytest.raises(MertoolError, match="attention"):
        FaceSleuth(3, attention="diagonal", preset="small")
    with pytest.raises(MertoolError, match="fpf"):
        FaceSleuth(3, fpf="cnn", preset="small")
    with pytest.raises(MertoolError, match="unknown option"):
        FaceSleuth(3, preset="small", colour=True)
    m = FaceSleuth(3, preset="small")
    onset, apex, aus = _pair(2, 32)
    with pytest.raises(ValueError, match="expects onset/apex"):
        m(onset, apex, aus)
    onset, apex, _ = _pair(2)
    with pytest.raises(ValueError, match="AU"):
        m(onset, apex, None)


def test_uint8_and_float_inputs_agree():
    m = FaceSleuth(3, preset="small").eval()
    onset, apex, aus = _pair()
    torch.testing.assert_close(m(onset, apex, aus), m(onset.to(torch.uint8), apex.to(torch.uint8), aus))


# ----------------------------------------------------------------------- engine hooks
def test_param_groups_and_epoch_log():
    m = FaceSleuth(3, theta="independent", preset="small", theta_lr_scale=5.0)
    groups = m.param_groups(1e-3, 0.6)
    assert groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.6
    assert groups[1]["lr"] == pytest.approx(5e-3) and groups[1]["weight_decay"] == 0.0
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len([p for p in m.parameters() if p.requires_grad])
    with torch.no_grad():
        m.block.thetas[2].fill_(math.radians(100.0))
    log = m.epoch_log()
    assert list(log) == [f"theta_deg_{i}" for i in range(1, 5)]
    assert log["theta_deg_3"] == pytest.approx(100.0) and log["theta_deg_1"] == pytest.approx(72.0)
    assert FaceSleuth(3, attention="cva", preset="small").epoch_log() == {}
    assert len(FaceSleuth(3, attention="cva", preset="small").param_groups(1e-3, 0.1)) == 1


# ----------------------------------------------------------------------- Swin
def test_relative_position_index_hand_example():
    # window 2: tokens (0,0), (0,1), (1,0), (1,1); index = (dy + 1) * 3 + (dx + 1)
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)


def _naive_block(blk: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Dense reference: every token attends to tokens of its (shifted) window that are
    contiguous in the image (no wrap-around), with the bias of their true offset."""
    h, w = blk.resolution
    win, s = blk.window, blk.shift
    attn = blk.attn
    b, n, c = x.shape
    heads, d = attn.heads, c // attn.heads
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    yy, xx = yy.reshape(-1), xx.reshape(-1)
    ry, rx = (yy - s) % h, (xx - s) % w  # coordinates after the cyclic shift
    same = ((ry[:, None] // win) == (ry[None] // win)) & ((rx[:, None] // win) == (rx[None] // win))
    wrapy, wrapx = ry >= h - s if s else torch.zeros_like(ry, dtype=torch.bool), rx >= w - s if s else torch.zeros_like(rx, dtype=torch.bool)
    same &= (wrapy[:, None] == wrapy[None]) & (wrapx[:, None] == wrapx[None])
    dy, dx = yy[:, None] - yy[None], xx[:, None] - xx[None]
    table = attn.relative_position_bias_table
    bias = table[((dy + win - 1) * (2 * win - 1) + (dx + win - 1)).clamp(0, table.shape[0] - 1)]  # n, n, heads
    bias = bias.permute(2, 0, 1).masked_fill(~same, float("-inf"))
    y = blk.norm1(x)
    q, k, v = attn.qkv(y).view(b, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
    out = attn.proj((a @ v).transpose(1, 2).reshape(b, n, c))
    x = x + out
    return x + blk.mlp(blk.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
def test_swin_block_matches_dense_reference(shift):
    torch.manual_seed(6)
    blk = SwinBlock(16, (8, 8), heads=2, window=4, shift=shift)
    torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=1.0)
    x = torch.randn(2, 64, 16)
    torch.testing.assert_close(blk(x), _naive_block(blk, x), atol=1e-4, rtol=1e-4)


def _swin_param_formula(embed: int, depths, heads, window: int, patch: int = 4) -> int:
    total = 3 * patch * patch * embed + embed + 2 * embed  # patch conv + bias + LayerNorm
    c = embed
    for i, (dep, nh) in enumerate(zip(depths, heads)):
        per_block = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (2 * window - 1) ** 2 * nh + (8 * c * c + 5 * c)
        total += dep * per_block
        if i < len(depths) - 1:
            total += 8 * c + 4 * c * 2 * c  # merge LayerNorm(4C) + Linear(4C -> 2C, no bias)
            c *= 2
    return total + 2 * c  # final LayerNorm


def test_swin_shape_and_parameter_count_of_the_papers_config():
    m = SwinTransformer()  # 224, patch 4, embed 128, [2, 2, 6], [4, 8, 16], window 7
    assert count_parameters(m) == _swin_param_formula(128, (2, 2, 6), (4, 8, 16), 7)
    small = SwinTransformer(64, 4, 3, 16, (2, 2, 2), (1, 2, 4), 4)
    assert small(torch.randn(2, 3, 64, 64)).shape == (2, 64, 4, 4)
    assert small.layers[0].blocks[1].shift == 2 and small.layers[2].blocks[1].shift == 0  # 4x4 = one window


def test_swin_checkpoint_mapping():
    torch.manual_seed(7)
    ours = SwinTransformer(64, 4, 3, 16, (2, 2, 2), (1, 2, 4), 4)
    deeper = SwinTransformer(64, 4, 3, 16, (2, 2, 3), (1, 2, 4), 4)  # like Swin-B vs our 3 stages
    ck = {f"module.{k}": v for k, v in deeper.state_dict().items()}
    ck["head.weight"] = torch.zeros(10, 64)
    ck["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    ck["norm.weight"] = torch.ones(128)  # a wider final norm: skipped
    ck.pop("module.norm.weight")
    mapped, skipped = map_swin_checkpoint({"model": ck}, ours)
    assert "head.weight" in skipped and "module.layers.2.blocks.2.mlp.fc1.weight" in skipped and "norm.weight" in skipped
    ours.load_state_dict(mapped, strict=False)
    torch.testing.assert_close(ours.layers[2].blocks[1].attn.qkv.weight, deeper.layers[2].blocks[1].attn.qkv.weight)
    torch.testing.assert_close(ours.patch_embed.proj.weight, deeper.patch_embed.proj.weight)
    bad = {"layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(529, 1)}  # window 12
    with pytest.raises(MertoolError, match="shape"):
        map_swin_checkpoint(bad, ours)
    with pytest.raises(MertoolError, match="not a Swin"):
        map_swin_checkpoint({"conv.weight": torch.zeros(1)}, ours)


def test_fpf_weights_file(tmp_path):
    torch.manual_seed(8)
    ref = SwinTransformer(64, 4, 3, 16, (2, 2, 2), (1, 2, 4), 4)
    path = tmp_path / "swin.pth"
    torch.save({"model": ref.state_dict()}, path)
    m = FaceSleuth(3, preset="small", fpf_weights=path)
    torch.testing.assert_close(m.fpf.layers[1].blocks[0].mlp.fc2.weight, ref.layers[1].blocks[0].mlp.fc2.weight)
    with pytest.raises(MertoolError, match="not found"):
        FaceSleuth(3, preset="small", fpf_weights=tmp_path / "missing.pth")


# ----------------------------------------------------------------------- augmentation
def test_pair_affine_shift_and_flip_match_numpy_pad_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 40, 40)).astype(np.float32)
    pad = 15
    for flip, (dx, dy) in [(False, (7, -4)), (True, (-15, 15)), (True, (0, 0))]:
        theta = pair_affine(torch.tensor([flip]), torch.tensor([[float(dx), float(dy)]]), torch.tensor([0.0]), 40)
        out = transform_pair(torch.from_numpy(img)[None], theta)[0].numpy()
        src = img[:, :, ::-1] if flip else img
        padded = np.pad(src, ((0, 0), (pad, pad), (pad, pad)))
        ref = padded[:, pad + dy: pad + dy + 40, pad + dx: pad + dx + 40]
        np.testing.assert_allclose(out, ref, atol=1e-3)


def test_pair_affine_rotation_matches_opencv():
    from skimage import data

    img = cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    angle = 3.0
    theta = pair_affine(torch.tensor([False]), torch.zeros(1, 2), torch.tensor([angle]), 64)
    out = transform_pair(torch.from_numpy(img).permute(2, 0, 1)[None], theta)[0].permute(1, 2, 0).numpy()
    # Our output pixel p samples the input at R(angle) p (y down), i.e. the image turns
    # by -angle in that frame; OpenCV's positive angle is counter-clockwise on screen.
    mat = cv2.getRotationMatrix2D((31.5, 31.5), angle, 1.0)
    ref = cv2.warpAffine(img, mat, (64, 64), flags=cv2.INTER_LINEAR)
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(out[inner] - ref[inner]).mean() < 0.5
    assert np.abs(out[inner] - img[inner]).mean() > 3  # it did rotate


def test_augment_pair_same_transform_for_onset_and_apex():
    onset, apex, aus = _pair(6, 32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    out = augment_pair({"onset": onset, "apex": apex, "aus": aus}, g1)
    assert out["aus"] is aus
    # same draws -> applying to (apex - onset) gives the difference of the outputs (linear warp)
    diff = augment_pair({"onset": apex - onset}, g2)["onset"]
    torch.testing.assert_close(out["apex"] - out["onset"], diff, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(out["onset"], onset)


def test_augment_registered_with_engine():
    from mertool.train.augment import get_augment

    assert get_augment(DEFAULTS["augment"]) is augment_pair


# ----------------------------------------------------------------------- engine integration
def test_engine_gradient_accumulation_equals_big_batch():
    """accumulate=2 with batch 2 gives the same SGD step as one batch of 4 (no BN, mean loss)."""
    from mertool.models import InputSpec, register_model
    from mertool.train.config import TrainConfig, resolve_recipe
    from mertool.train.fold import FoldTrainer
    from mertool.train.loso import Fold

    name = "_test_linear_accumulate"
    if name not in list_models():
        @register_model(name, InputSpec(stage="flow", arrays={"x": (5,)}))
        def _build(num_classes: int) -> torch.nn.Module:
            class Lin(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.fc = torch.nn.Linear(5, num_classes)

                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return self.fc(x)

            return Lin()

    g = torch.Generator().manual_seed(0)
    X = {"x": torch.randn(6, 5, generator=g)}
    y = np.array([0, 1, 0, 1, 0, 1])
    fold = Fold("f", np.arange(4), np.array([], dtype=np.int64), np.array([4, 5]), ("s",))
    states = []
    for bs, acc in [(4, 1), (2, 2)]:
        cfg = resolve_recipe(TrainConfig(model=name, epochs=1, batch_size=bs, accumulate=acc, optimizer="sgd",
                                         momentum=0.0, lr=0.5, device="cpu"))
        _, state = FoldTrainer(X, y, fold, 0, cfg, 2, torch.device("cpu")).run()
        states.append(state)
    torch.testing.assert_close(states[0]["fc.weight"], states[1]["fc.weight"])
    with pytest.raises(MertoolError, match="accumulate"):
        TrainConfig.resolve(model=name, accumulate=0)


def _aligned_real_faces(path, n_subjects: int = 3, per_class: int = 2, size: int = 64):
    """aligned.h5 of real-face clips (astronaut): class 'up' raises a brow-height band, 'down' lowers it."""
    from skimage import data

    from mertool.stages.stagefile import StageWriter

    base = cv2.resize(data.astronaut()[20:260, 100:340], (size, size), interpolation=cv2.INTER_AREA)
    w = StageWriter(path, "aligned", {"size": size})
    order = []
    rng = np.random.default_rng(0)
    for s in range(n_subjects):
        subj = cv2.warpAffine(base, np.float64([[1, 0, s - 1], [0, 1, 1 - s]]), (size, size), borderMode=cv2.BORDER_REFLECT)
        subj = np.clip(subj * (0.8 + 0.2 * s), 0, 255).astype(np.uint8)
        for label, dy in (("up", -2.0), ("down", 2.0)):
            for k in range(per_class):
                band = np.zeros((size, size), np.float32)
                band[size // 4: size // 2] = 1.0
                flow_y = (dy * band).astype(np.float32)
                mx, my = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
                apex = cv2.remap(subj, mx, my - flow_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                noise = rng.integers(-2, 3, (2, size, size, 3))
                frames = np.clip(np.stack([subj, apex]).astype(int) + noise, 0, 255).astype(np.uint8)
                sid = f"s{s}_{label}{k}"
                order.append(sid)
                w.add(sid, {"frames": frames, "frame_numbers": np.array([1, 3]), "landmarks": np.zeros((68, 2), np.float32),
                            "transform": np.eye(2, 3)},
                      {"subject": f"s{s}", "label": label, "dataset": "manifest", "clip": sid, "onset": 1, "apex": 3,
                       "offset": 5, "aus": "1+2" if label == "up" else "4", "apex_source": "sheet"})
    w.finish(order, stacked=False)
    return path


@pytest.mark.slow
def test_loso_run_facesleuth_small_on_cpu(tmp_path, capsys):
    """aligned -> pairs -> LOSO train of facesleuth-small; angles logged per epoch and plotted."""
    import csv as _csv
    import json

    from mertool.cli.main import cli

    aligned = _aligned_real_faces(tmp_path / "aligned.h5")
    pairs = tmp_path / "pairs.h5"
    assert cli(["pairs", str(aligned), "-o", str(pairs), "--size", "64"]) == 0
    run = tmp_path / "run"
    rc = cli(["train", str(pairs), "--model", "facesleuth-small", "-o", str(run), "--epochs", "2",
              "--batch-size", "4", "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_folds"] == 3 and m["n_samples"] == 12
    angles = m["model_log_final"]
    assert sorted(angles) == [f"theta_deg_{i}" for i in range(1, 5)]
    assert len({round(v, 9) for v in angles.values()}) == 1  # shared angle
    assert angles["theta_deg_1"] != pytest.approx(72.0, abs=1e-6)  # the angle was trained
    assert (run / "model_log.png").is_file()
    logs = sorted((run / "folds").glob("*/log.csv"))
    assert len(logs) == 3
    with open(logs[0]) as fh:
        rows = list(_csv.DictReader(fh))
    assert len(rows) == 2 and "theta_deg_1" in rows[0]
