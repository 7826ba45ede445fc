"""Off-TANet: exact parameter budget, attention maths, published-checkpoint loading, FLOPs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mertool.errors import MertoolError
from mertool.models import count_parameters, create_model, get_entry
from mertool.models.flops import count_flops
from mertool.models.offtanet import SelfAttentionHead, positional_code

# Published key -> shape (3-class head), written out from the description of the
# architecture, independently of mertool's module code.
PUBLISHED_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.0.weight": (8, 3, 7, 7), "conv1.0.bias": (8,),
    **{f"conv1.2.{p}": (8,) for p in ("weight", "bias", "running_mean", "running_var")},
}
for _blk, _ci, _co in (("res1", 8, 18), ("res2", 18, 28)):
    PUBLISHED_SHAPES |= {
        f"{_blk}.conv.0.weight": (_co, _ci, 3, 3), f"{_blk}.conv.0.bias": (_co,),
        f"{_blk}.conv.3.weight": (_co, _co, 3, 3), f"{_blk}.conv.3.bias": (_co,),
        f"{_blk}.botneck.weight": (_co, _ci, 1, 1), f"{_blk}.botneck.bias": (_co,),
        **{f"{_blk}.conv.{i}.{p}": (_co,) for i in (1, 4) for p in ("weight", "bias", "running_mean", "running_var")},
    }
PUBLISHED_SHAPES |= {
    "eres.botneck.weight": (8, 28, 1, 1), "eres.botneck.bias": (8,),
    "eres.conv1.0.weight": (28, 28, 3, 3), "eres.conv1.0.bias": (28,),
    **{f"eres.conv1.1.{p}": (28,) for p in ("weight", "bias", "running_mean", "running_var")},
    "eres.conv2.0.weight": (8, 28, 3, 3), "eres.conv2.0.bias": (8,),
    **{f"eres.conv2.1.{p}": (8,) for p in ("weight", "bias", "running_mean", "running_var")},
    "eres.ca.fc1.weight": (1, 28, 1, 1), "eres.ca.fc2.weight": (28, 1, 1, 1),
    "eres.spa.conv1.weight": (1, 2, 3, 3),
    **{f"eres.sa.sa_blocks.{h}.{w}.{p}": ((7, 28, 1, 1) if p == "weight" else (7,))
       for h in range(4) for w in ("w_q", "w_k", "w_v") for p in ("weight", "bias")},
    "dense.0.weight": (64, 392), "dense.0.bias": (64,),
    "dense.3.weight": (64, 64), "dense.3.bias": (64,),
    "dense.6.weight": (3, 64), "dense.6.bias": (3,),
}


def published_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint under the published names (BN stats positive, sensible scale)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in PUBLISHED_SHAPES.items():
        if k.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) > 1:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        else:
            t = 0.3 * torch.randn(shape, generator=g)
        state[k] = t
    return state


def pos_code_reference(n: int = 14) -> np.ndarray:
    p = np.array([np.sin(10000.0 ** (-(j // 2) / n)) if j % 2 == 0 else np.cos(10000.0 ** (-(j // 2) / n)) for j in range(n)])
    return p[:, None] + p[None, :]


def reference_forward(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Off-TANet in eval mode written functionally from the issue text, on a published state."""
    P = torch.tensor(pos_code_reference(), dtype=torch.float32)

    def bn(t, pre):
        return F.batch_norm(t, s[f"{pre}.running_mean"], s[f"{pre}.running_var"], s[f"{pre}.weight"], s[f"{pre}.bias"], False, 0.0, 1e-5)

    def conv(t, pre, **kw):
        return F.conv2d(t, s[f"{pre}.weight"], s.get(f"{pre}.bias"), **kw)

    y = bn(F.relu(conv(x, "conv1.0", stride=2, padding=3)), "conv1.2")
    for blk in ("res1", "res2"):
        main = F.relu(bn(conv(y, f"{blk}.conv.0", padding=1), f"{blk}.conv.1"))
        main = F.relu(bn(conv(main, f"{blk}.conv.3", padding=1), f"{blk}.conv.4"))
        y = F.max_pool2d(main + conv(y, f"{blk}.botneck"), 2)
    short = conv(y, "eres.botneck")
    z = F.relu(bn(conv(y, "eres.conv1.0", padding=1), "eres.conv1.1"))
    mlp = lambda d: conv(F.relu(conv(d, "eres.ca.fc1")), "eres.ca.fc2")  # noqa: E731
    z = z * torch.sigmoid(mlp(z.mean((2, 3), keepdim=True)) + mlp(z.amax((2, 3), keepdim=True)))
    z = z * torch.sigmoid(conv(torch.cat([z.mean(1, keepdim=True), z.amax(1, keepdim=True)], 1), "eres.spa.conv1", padding=1))
    heads = []
    for h in range(4):
        q, k, v = (conv(z, f"eres.sa.sa_blocks.{h}.{w}") for w in ("w_q", "w_k", "w_v"))
        out = torch.empty_like(v)
        for b in range(q.shape[0]):
            for c in range(q.shape[1]):
                logit = q[b, c] @ k[b, c].T + q[b, c] @ P.T
                out[b, c] = torch.softmax(logit.flatten(), 0).reshape(14, 14) * v[b, c]
        heads.append(out)
    z = torch.cat(heads, 1)
    z = F.relu(bn(conv(z, "eres.conv2.0", padding=1), "eres.conv2.1"))
    feat = F.max_pool2d(z + short, 2).flatten(1)
    h1 = F.relu(F.linear(feat, s["dense.0.weight"], s["dense.0.bias"]))
    h2 = F.relu(F.linear(h1, s["dense.3.weight"], s["dense.3.bias"]))
    return F.linear(h2, s["dense.6.weight"], s["dense.6.bias"])


def test_parameter_budget_exact():
    m = create_model("offtanet", num_classes=3)
    parts = {name: count_parameters(getattr(m, name)) for name in ("conv1", "res1", "res2", "eres", "dense")}
    assert parts == {"conv1": 1200, "res1": 4482, "res2": 12292, "eres": 11922, "dense": 29507}
    assert count_parameters(m) == 59403
    # Every trainable parameter belongs to one of the five parts.
    assert sum(parts.values()) == count_parameters(m)


def test_published_key_set_matches_model():
    m = create_model("offtanet", num_classes=3)
    own = {k: tuple(v.shape) for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == PUBLISHED_SHAPES
    assert sum(math.prod(s) for k, s in PUBLISHED_SHAPES.items() if "running" not in k) == 59403


def test_positional_code_formula():
    P = positional_code(14).numpy()
    np.testing.assert_allclose(P, pos_code_reference(14), rtol=0, atol=1e-6)
    # hand-worked entries: p_0 = sin(1), p_1 = cos(1), p_13 = cos(10000^(-6/14))
    assert P[0, 0] == pytest.approx(2 * math.sin(1.0), abs=1e-6)
    assert P[0, 1] == pytest.approx(math.sin(1.0) + math.cos(1.0), abs=1e-6)
    assert P[13, 13] == pytest.approx(2 * math.cos(10000 ** (-6 / 14)), abs=1e-6)
    assert np.array_equal(P, P.T)


def test_self_attention_head_softmax_over_196_per_channel():
    torch.manual_seed(1)
    head = SelfAttentionHead(28, 7).eval()
    x = torch.randn(2, 28, 14, 14)
    out = head(x)
    q, k, v = head.w_q(x), head.w_k(x), head.w_v(x)
    P = torch.tensor(pos_code_reference(), dtype=torch.float32)
    for b in range(2):
        for c in range(7):
            logits = (q[b, c] @ k[b, c].T + q[b, c] @ P.T).double()
            attn = torch.exp(logits - logits.max())
            attn = attn / attn.sum()  # normalised over all 196 entries of the map
            torch.testing.assert_close(out[b, c].double(), attn * v[b, c].double(), rtol=1e-5, atol=1e-6)


def test_published_checkpoint_loads_and_matches_reference(tmp_path):
    state = published_state(seed=3)
    path = tmp_path / "fold01.pth"
    torch.save(state, path)
    m = create_model("offtanet", num_classes=3, weights=path).eval()
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = m(flow=x)
        ref = reference_forward(state, x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert got.std() > 1e-3  # not a degenerate constant output


def test_saved_model_roundtrip_exact(tmp_path):
    torch.manual_seed(5)
    a = create_model("offtanet", num_classes=3)
    a.train()(flow=torch.randn(4, 3, 112, 112))  # move BN running stats off their defaults
    a.eval()
    path = tmp_path / "a.pt"
    # Published files are plain state_dicts with "module." (DataParallel) prefixes and,
    # from old torch versions, without num_batches_tracked.
    torch.save({f"module.{k}": v for k, v in a.state_dict().items() if "num_batches" not in k}, path)
    b = create_model("offtanet", num_classes=3, weights=path).eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(a(flow=x), b(flow=x))


def test_bad_weights_files(tmp_path):
    with pytest.raises(MertoolError, match="not found"):
        create_model("offtanet", num_classes=3, weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MertoolError, match="junk.pth"):
        create_model("offtanet", num_classes=3, weights=junk)
    state = published_state()
    del state["eres.sa.sa_blocks.3.w_v.bias"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(MertoolError, match="do not fit"):
        create_model("offtanet", num_classes=3, weights=tmp_path / "partial.pth")
    torch.save(published_state(), tmp_path / "three.pth")
    with pytest.raises(MertoolError, match="do not fit"):  # 3-class checkpoint into a 5-class head
        create_model("offtanet", num_classes=5, weights=tmp_path / "three.pth")


def test_flops_conventions():
    m = create_model("offtanet", num_classes=3)
    x = {"flow": torch.randn(2, 3, 112, 112)}
    # torchstat convention reproduces the paper's 30.08 M
    assert round(count_flops(m, x, "torchstat").total / 1e6, 2) == 30.08
    # MACs: conv/linear MACs by hand + the attention products (2 per channel, 14^3 each)
    convs = [(3, 8, 7, 56), (8, 18, 3, 56), (18, 18, 3, 56), (8, 18, 1, 56), (18, 28, 3, 28), (28, 28, 3, 28),
             (18, 28, 1, 28), (28, 28, 3, 14), (28, 8, 3, 14), (28, 8, 1, 14), (2, 1, 3, 14),
             (28, 3 * 4 * 7, 1, 14)]  # last: q, k, v of 4 heads, 28->7 each
    hand = sum(ci * co * k * k * s * s for ci, co, k, s in convs)
    hand += 2 * (28 + 28)  # channel attention 28->1->28 on the avg and the max descriptor
    hand += 28 * 2 * 14**3  # q kᵀ and q Pᵀ for each of the 4 x 7 channels
    hand += 392 * 64 + 64 * 64 + 64 * 3
    assert count_flops(m, x, "macs").total == hand
    # independent reference: torch's own FLOP counter (2 FLOPs per MAC)
    from torch.utils.flop_counter import FlopCounterMode

    m.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(**x)
    assert count_flops(m, x, "flops").total * 2 == fc.get_total_flops()


def test_input_spec_and_shapes():
    # The recipe's values are checked against the authors' code in test_published_recipes.py.
    e = get_entry("offtanet")
    assert e.input.stage == "flow" and e.input.arrays == {"flow": (3, 112, 112)}
    m = create_model("offtanet", num_classes=5).eval()
    assert m(flow=torch.randn(1, 3, 112, 112)).shape == (1, 5)
    assert m.features(torch.randn(2, 3, 112, 112)).shape == (2, 392)
    with pytest.raises(ValueError, match="14, 14"):
        m(flow=torch.randn(1, 3, 96, 96))
    # "no optical strain" ablation: only the stem changes
    assert count_parameters(create_model("offtanet", num_classes=3, in_channels=2)) == 59403 - 8 * 49
