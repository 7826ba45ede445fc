"""DIANet: two-stream dynamic-image network with cross-attention fusion.

Khuong et al., "DIANet: A Phase-Aware Dual-Stream Network for Micro-Expression
Recognition via Dynamic Images" (4DMR @ IJCAI 2025). No public code; built from the text.

Input: ``dynimg`` (N x 2 x 3 x S x S, from ``mertool dynimg``): phase 0 is DI-Onset
(onset..apex), phase 1 DI-Offset (apex..offset).

1. Each phase goes through its own backbone (EfficientNetV2-S by default; separate
   weights, ``share_backbone=True`` to tie them) and a linear projection of every
   feature-map position to a 512-d token. The mean token is the stream's embedding
   (f1, f2 in the paper).
2. Cross-attention fusion: onset tokens attend to offset tokens and vice versa
   (multi-head, learned q/k/v, residual + LayerNorm); each result is mean-pooled and the
   two are concatenated and projected to 512 (paper: "concatenated and passed through a
   projection layer").
3. MLP head: two fully connected layers with ReLU and dropout.
4. Loss: CE + lambda * mean(1 - cos(f1, f2)). The paper does not state lambda; mertool
   uses :data:`DEFAULT_CONSISTENCY` = 0.1 (a regulariser an order below the CE at
   chance). In training mode the model returns ``(logits, lambda * L_cons)``.

Ablation switches (builder kwargs, and registered ``dianet-small-*`` presets):
``backbone`` (efficientnetv2_s | resnet18 | convnext_tiny | mobilevit_s | mobilevit_xs),
``fusion`` (cross | simple | concat | sum; "simple" is the paper's Table 3 baseline:
dot-product attention without learned projections, plus residual),
``consistency`` (lambda; 0 = off), ``phases`` (both | onset | offset: one stream only),
``share_backbone``, ``tokens`` (map: all h x w positions; vector: the paper-literal single
pooled token per stream). The dynamic-image weights (linear vs exact) are an ablation of
the ``dynimg`` stage (``--kind``), not of the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MertoolError
from ._registry import InputSpec, register_model
from .backbones import TokenEncoder, build_backbone, load_backbone_weights, resolve_name
from .layers import MatMul

#: lambda of the consistency loss. The paper gives none; 0.1 is mertool's documented choice.
DEFAULT_CONSISTENCY = 0.1
FUSIONS = ("cross", "simple", "concat", "sum")
PHASES = ("both", "onset", "offset")
TOKENS = ("map", "vector")


def consistency_loss(f1: torch.Tensor, f2: torch.Tensor, weight: float = DEFAULT_CONSISTENCY) -> torch.Tensor:
    """``weight * mean_i (1 - cos(f1_i, f2_i))`` (paper Eqs. 4-5).

    0 for identical (parallel) embeddings, ``2 * weight`` for opposite ones.

    Parameters
    ----------
    f1, f2 : torch.Tensor
        N x D embeddings of the onset and offset streams.
    weight : float
        lambda.
    """
    if f1.shape != f2.shape or f1.ndim != 2:
        raise ValueError(f"embeddings must both be N x D, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    return weight * (1.0 - F.cosine_similarity(f1, f2, dim=1, eps=1e-8)).mean()


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries ``q`` over keys/values ``kv`` (learned projections).

    Written out (rather than ``nn.MultiheadAttention``, whose fused inference path hides
    the attention products from FLOP counters) with :class:`MatMul` modules."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.scores, self.mix = MatMul(), MatMul()
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        n, tq, d = q.shape
        split = lambda t: t.reshape(n, t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        qh, kh, vh = split(self.q(q)), split(self.k(kv)), split(self.v(kv))
        attn = torch.softmax(self.scores(qh, kh.transpose(-2, -1)) * (d // self.heads) ** -0.5, dim=-1)
        y = self.mix(self.drop(attn), vh).transpose(1, 2).reshape(n, tq, d)
        return self.out(y)


class CrossAttentionFusion(nn.Module):
    """Each stream's tokens attend to the other's: a_1 = LN(t_1 + MHA(t_1, t_2)), and
    symmetrically a_2; separate attention weights per direction."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn_onset = MultiHeadAttention(dim, heads, dropout)
        self.attn_offset = MultiHeadAttention(dim, heads, dropout)
        self.norm_onset = nn.LayerNorm(dim)
        self.norm_offset = nn.LayerNorm(dim)

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a1 = self.norm_onset(t1 + self.attn_onset(t1, t2))
        a2 = self.norm_offset(t2 + self.attn_offset(t2, t1))
        return a1, a2


class SimpleAttentionFusion(nn.Module):
    """Paper's "Simple Attention Block": plain dot-product attention, residual, no weights."""

    def __init__(self) -> None:
        super().__init__()
        self.scores, self.mix = MatMul(), MatMul()

    def _attend(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        attn = torch.softmax(self.scores(q, kv.transpose(1, 2)) * q.shape[-1] ** -0.5, dim=-1)
        return q + self.mix(attn, kv)

    def forward(self, t1: torch.Tensor, t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._attend(t1, t2), self._attend(t2, t1)


def augment_dynimg(x: torch.Tensor, max_degrees: float = 10.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The paper's training augmentation: random horizontal flip and in-plane rotation.

    The same flip/rotation is applied to both phases of a sample (they show the same face).

    Parameters
    ----------
    x : torch.Tensor
        N x P x C x S x S dynamic images.
    max_degrees : float
        Rotation angle drawn uniformly from [-max_degrees, max_degrees].
    generator : torch.Generator, optional
        Source of randomness (the engine passes the fold's generator).
    """
    n, p, c, h, w = x.shape
    dev = x.device
    flip = torch.rand(n, generator=generator) < 0.5
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * sx, cos
    theta = theta.to(dev, x.dtype).repeat_interleave(p, 0)
    flat = x.reshape(n * p, c, h, w)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, padding_mode="border", align_corners=False).reshape(n, p, c, h, w)


def dynimg_fliprot(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Engine augmentation for dynamic images: :func:`augment_dynimg` on ``dynimg``.

    :mod:`mertool.train.augment` registers it as ``"dynimg_fliprot"`` (the name in this
    family's ``defaults["augment"]``); a plain function here, so models never import train.
    """
    return {k: augment_dynimg(v, generator=generator) if k == "dynimg" else v for k, v in batch.items()}


class DIANet(nn.Module):
    """Two-stream dynamic-image network (see module docstring).

    Parameters
    ----------
    num_classes : int
    backbone : str
        Backbone name (:mod:`mertool.models.backbones`).
    width, depth : float
        Backbone multipliers (1, 1 = the published network).
    drop_path : float, optional
        Backbone stochastic depth (the backbone's default if None).
    embed_dim : int
        Token/embedding size (512 in the paper).
    heads : int
        Attention heads of the cross-attention fusion.
    fusion : {"cross", "simple", "concat", "sum"}
    consistency : float
        lambda of the consistency loss (0 = off).
    phases : {"both", "onset", "offset"}
        Which dynamic images are used; one phase means one stream, no fusion/consistency.
    share_backbone : bool
        One encoder (backbone + projection) for both phases.
    tokens : {"map", "vector"}
        Attend over all feature-map positions, or over the single pooled embedding.
    hidden : int
        Hidden units of the MLP head.
    dropout : float
        Dropout in the head.
    input_norm : {"image", "none"}
        "image": standardise each dynamic image (mean/std over C, H, W) so the network
        sees the same scale whatever normalisation the dynimg stage chose.
    pretrained : path, optional
        Local torchvision/timm checkpoint of the backbone, loaded into every stream.

    Training augmentation (the paper's flip + rotation) is the engine's job: the
    augmentation ``"dynimg_fliprot"`` (:func:`dynimg_fliprot`) is in this model's defaults.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "efficientnetv2_s",
        width: float = 1.0,
        depth: float = 1.0,
        drop_path: float | None = None,
        embed_dim: int = 512,
        heads: int = 8,
        fusion: str = "cross",
        consistency: float = DEFAULT_CONSISTENCY,
        phases: str = "both",
        share_backbone: bool = False,
        tokens: str = "map",
        hidden: int = 256,
        dropout: float = 0.3,
        input_norm: str = "image",
        pretrained: str | Path | None = None,
    ) -> None:
        super().__init__()
        for label, value, allowed in (("fusion", fusion, FUSIONS), ("phases", phases, PHASES),
                                      ("tokens", tokens, TOKENS), ("input_norm", input_norm, ("image", "none"))):
            if value not in allowed:
                raise MertoolError(f"dianet: {label} must be one of {', '.join(allowed)}, got {value!r}")
        if num_classes < 2:
            raise MertoolError(f"dianet: need at least 2 classes, got {num_classes}")
        if consistency < 0:
            raise MertoolError(f"dianet: consistency weight must be >= 0, got {consistency}")
        if embed_dim % heads:
            raise MertoolError(f"dianet: embed_dim {embed_dim} is not divisible by heads {heads}")
        self.backbone_name = resolve_name(backbone)
        self.fusion, self.phases, self.tokens = fusion, phases, tokens
        self.consistency = float(consistency) if phases == "both" else 0.0
        self.input_norm = input_norm
        n_enc = 1 if (share_backbone or phases != "both") else 2
        self.encoders = nn.ModuleList(
            TokenEncoder(build_backbone(backbone, width, depth, drop_path), embed_dim) for _ in range(n_enc))
        if pretrained is not None:
            for enc in self.encoders:
                load_backbone_weights(enc.backbone, self.backbone_name, pretrained)
        self.fuse: nn.Module | None = None
        if phases == "both" and fusion == "cross":
            self.fuse = CrossAttentionFusion(embed_dim, heads)
        elif phases == "both" and fusion == "simple":
            self.fuse = SimpleAttentionFusion()
        fused_dim = embed_dim if (phases != "both" or fusion == "sum") else 2 * embed_dim
        self.project = nn.Linear(fused_dim, embed_dim)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))

    # -- pieces (public so tests and notebooks can look inside) -------------------------
    def _select(self, dynimg: torch.Tensor) -> list[torch.Tensor]:
        if dynimg.ndim != 5:
            raise MertoolError(f"dianet: dynimg must be N x P x C x H x W, got shape {tuple(dynimg.shape)}")
        p = dynimg.shape[1]
        if self.phases == "both":
            if p < 2:
                raise MertoolError("dianet: two phases (DI-Onset, DI-Offset) needed, the input has one; "
                                   "use phases='onset' or write dynimg with --phases onset,offset")
            return [dynimg[:, 0], dynimg[:, 1]]
        if self.phases == "offset" and p < 2:
            raise MertoolError("dianet: phases='offset' needs the DI-Offset phase, the input has one phase")
        return [dynimg[:, 0 if (self.phases == "onset" or p == 1) else 1]]

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm == "none":
            return x
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        return (x - mean) / (std + 1e-5)

    def stream_tokens(self, dynimg: torch.Tensor) -> list[torch.Tensor]:
        """Per-stream tokens N x T x D (T = h*w, or 1 with ``tokens='vector'``)."""
        out = []
        for i, x in enumerate(self._select(dynimg)):
            t = self.encoders[min(i, len(self.encoders) - 1)](self._normalise(x))
            out.append(t.mean(1, keepdim=True) if self.tokens == "vector" else t)
        return out

    def features(self, dynimg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything up to the head: ``f1``/``f2`` (stream embeddings), ``a1``/``a2``
        (fused tokens, attention fusions only), ``z`` (projected fused representation)."""
        ts = self.stream_tokens(dynimg)
        out = {"f1": ts[0].mean(1)}
        if len(ts) == 1:
            z = out["f1"]
        else:
            out["f2"] = ts[1].mean(1)
            if self.fuse is not None:
                out["a1"], out["a2"] = self.fuse(ts[0], ts[1])
                z = torch.cat([out["a1"].mean(1), out["a2"].mean(1)], dim=1)
            elif self.fusion == "concat":
                z = torch.cat([out["f1"], out["f2"]], dim=1)
            else:
                z = out["f1"] + out["f2"]
        out["z"] = self.project(z)
        return out

    def forward(self, dynimg: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(dynimg)
        logits = self.head(feats["z"])
        if self.training and self.consistency > 0:
            return logits, consistency_loss(feats["f1"], feats["f2"], self.consistency)
        return logits

    def load_weights(self, state: dict[str, Any]) -> None:
        """Load a full DIANet state_dict, or a backbone checkpoint into every stream."""
        own = self.state_dict()
        if any(k in own for k in state):
            self.load_state_dict(state)
            return
        for enc in self.encoders:
            load_backbone_weights(enc.backbone, self.backbone_name, state)


# --- registry ------------------------------------------------------------------------

#: Paper recipe (Sec. 3.4): Adam, lr 1e-4, batch 32, 50 epochs, 224x224; classes with
#: fewer than 10 samples excluded (Sec. 3.1). Early stopping on validation loss in the
#: paper; mertool keeps the fixed epoch budget unless a validation split is configured.
DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 32, "epochs": 50,
    "min_class_samples": 10, "augment": "dynimg_fliprot",
}
#: CPU preset: tiny backbones at 64x64; a higher lr because it trains from scratch briefly;
#: keeps every class (tiny demo sets have fewer than 10 samples per class).
SMALL_DEFAULTS: dict[str, Any] = {**DEFAULTS, "lr": 1e-3, "batch_size": 16, "epochs": 30, "min_class_samples": 0}
SMALL: dict[str, Any] = {"width": 0.25, "depth": 0.25, "embed_dim": 64, "heads": 4, "hidden": 64}
SMALL_SIZE = 64

#: Ablation rows: name suffix -> builder kwargs (the first row is the full model).
ABLATIONS: dict[str, dict[str, Any]] = {
    "": {},
    "resnet18": {"backbone": "resnet18"},
    "convnext": {"backbone": "convnext_tiny"},
    "mobilevit": {"backbone": "mobilevit_s"},
    "simple": {"fusion": "simple"},
    "concat": {"fusion": "concat"},
    "sum": {"fusion": "sum"},
    "nocons": {"consistency": 0.0},
    "onset": {"phases": "onset"},
    "shared": {"share_backbone": True},
    "vector": {"tokens": "vector"},
}


def _register(name: str, size: int, preset: dict[str, Any], defaults: dict[str, Any], doc: str, source: str) -> None:
    @register_model(name, InputSpec(stage="dynimg", arrays={"dynimg": (2, 3, size, size)}),
                    description=doc, defaults=defaults, source=source)
    def build(num_classes: int, **kwargs: Any) -> DIANet:
        return DIANet(num_classes, **{**preset, **kwargs})


_register("dianet", 224, {}, DEFAULTS,
          "DIANet: DI-Onset + DI-Offset, two EfficientNetV2-S streams, cross-attention fusion, consistency loss",
          "paper: DIANet Sec. 3.4 (consistency weight 0.1: mertool's, the paper gives none)")
for _suffix, _kw in ABLATIONS.items():
    _name = "dianet-small" + (f"-{_suffix}" if _suffix else "")
    _what = ", ".join(f"{k}={v}" for k, v in _kw.items()) or "default switches"
    _register(_name, SMALL_SIZE, {**SMALL, **_kw}, SMALL_DEFAULTS,
              f"DIANet CPU preset (width/depth 0.25, 64x64, 64-d tokens), {_what}", "mertool: CPU preset")
