"""FaceSleuth: CVA/SOA motion branch + Swin position focaliser (FPF) + AU embedding.

Papers: cva-fpf-au.md (CVA, FPF, AU) and facesleuth-soa.md (SOA), with the lost
equations restored in papers/README.md. Input: the aligned onset and apex frames
(``mertool pairs``: ``onset``, ``apex`` N x 3 x S x S uint8) and the 21-d AU vector.

Layout for S = 224 (small preset S = 64: widths /8, Swin embed 16, window 4)::

    motion = (apex - onset) / 255                                 3 x 224 x 224
    stem   conv3x3/2 -> BN -> ReLU                               64 x 112 x 112
    block  4 attention modules (CVA/SOA/x/xy), strides 1,2,2,2  -> 512 x 14 x 14
           each: F_conv = f1x1(f3x3(F)) + f1x1(F), re-weighted by its attention,
           attention chained module to module ("continuous")
    FPF    Swin(onset) + Swin(apex), each 512 x 14 x 14 (batched together)
    fuse   motion + FPF                                          512 x 14 x 14
    head   flatten (100,352) ++ AU (21) -> BN -> ReLU -> FC       num_classes
           (``head="pooled"``: global average pool (512) ++ AU -> BN -> ReLU -> FC)

Inputs arrive as float tensors holding 0..255 values (the engine casts the uint8
stage arrays to float32); the model normalises them itself, so ``pairs.h5`` stays
uint8. uint8 tensors are accepted as well.

Hooks the training engine uses when present:

- ``param_groups(lr, weight_decay)``: the SOA angles get their own learning rate
  (``theta_lr_scale`` x lr) and no weight decay (decay would pull the angle to 0, i.e.
  towards horizontal attention, a bias the experiment must not have).
- ``epoch_log()``: the current angle of each SOA module in degrees, logged per epoch.
- augmentation ``"facesleuth_pair"`` (:func:`augment_pair`, which
  :mod:`mertool.train.augment` registers under that name): the same flip / padded crop /
  small rotation on onset and apex of a sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MertoolError
from ._factory import count_parameters
from ._registry import InputSpec, register_model
from .attention import MODES, THETA_MODES, DirectionalAttentionBlock
from .swin import SmallViT, SwinTransformer, load_swin_checkpoint, map_swin_checkpoint

NUM_AUS = 21
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, dict[str, Any]] = {
    # The papers' sizes.
    "full": dict(
        img_size=224, stem_channels=64, channels=(64, 128, 256, 512), swin_embed=128,
        swin_depths=(2, 2, 6), swin_heads=(4, 8, 16), window=7, vit_depth=6, vit_heads=8,
    ),
    # CPU tests and demos: same structure (shifted windows included), 64 x 64 frames.
    "small": dict(
        img_size=64, stem_channels=8, channels=(8, 16, 32, 64), swin_embed=16,
        swin_depths=(2, 2, 2), swin_heads=(1, 2, 4), window=4, vit_depth=2, vit_heads=2,
    ),
}
FPF_KINDS = ("swin", "vit", "none")
FRAMES = ("dual", "onset", "apex")
HEADS = ("flatten", "pooled")


class FaceSleuth(nn.Module):
    """FaceSleuth and every ablation of the two papers as a switch.

    Parameters
    ----------
    num_classes : int
        Output classes.
    attention : str
        ``"soa"`` (learnable orientation), ``"cva"``/``"y"`` (vertical), ``"x"``
        (horizontal) or ``"xy"`` (both, coordinate-attention style).
    continuous : bool
        Chain attention maps between modules (False = "independent attention").
    theta : str
        SOA angle: ``"shared"`` (one for all modules), ``"independent"`` (one per
        module) or ``"frozen"`` (fixed at ``theta_init``).
    theta_init : float
        Initial (or frozen) SOA angle in degrees; 90 = vertical = CVA. Default 72: off
        both axes, so a drift to vertical (or away from it) is visible.
    theta_lr_scale, theta_weight_decay : float
        Learning-rate multiplier and weight decay of the angle(s) (``param_groups``).
    fpf : str
        Position focaliser: ``"swin"``, ``"vit"`` or ``"none"``.
    frames : str
        FPF input: ``"dual"`` (onset + apex, summed), ``"onset"`` or ``"apex"``.
    use_au : bool
        Concatenate the 21-d AU vector before the classifier.
    head : str
        ``"flatten"`` (the papers' head) or ``"pooled"`` (compact: global average pool).
    preset : str
        ``"full"`` (224 x 224, the papers' widths) or ``"small"`` (64 x 64).
    fpf_weights : path, optional
        Local Swin checkpoint (reference layout; see :mod:`mertool.models.swin`).
    **sizes
        Override preset entries (``img_size``, ``channels``, ``swin_embed`` ...).
    """

    def __init__(
        self,
        num_classes: int,
        attention: str = "soa",
        continuous: bool = True,
        theta: str = "shared",
        theta_init: float = 72.0,
        theta_lr_scale: float = 10.0,
        theta_weight_decay: float = 0.0,
        fpf: str = "swin",
        frames: str = "dual",
        use_au: bool = True,
        head: str = "flatten",
        preset: str = "full",
        fpf_weights: str | Path | None = None,
        **sizes: Any,
    ) -> None:
        super().__init__()
        mode = "y" if attention == "cva" else attention
        frames = "onset" if frames == "single" else frames
        checks = [
            ("attention", mode, MODES), ("theta", theta, THETA_MODES), ("fpf", fpf, FPF_KINDS),
            ("frames", frames, FRAMES), ("head", head, HEADS), ("preset", preset, tuple(PRESETS)),
        ]
        for what, value, allowed in checks:
            if value not in allowed:
                raise MertoolError(f"facesleuth: {what} must be one of {', '.join(allowed)}, got {value!r}")
        if num_classes < 2:
            raise MertoolError(f"facesleuth: num_classes must be >= 2, got {num_classes}")
        cfg = dict(PRESETS[preset])
        unknown = sorted(set(sizes) - set(cfg))
        if unknown:
            raise MertoolError(f"facesleuth: unknown option(s) {', '.join(unknown)}")
        cfg.update(sizes)
        size, chans = int(cfg["img_size"]), tuple(cfg["channels"])
        if size % 16:
            raise MertoolError(f"facesleuth: img_size must be a multiple of 16, got {size}")
        self.img_size, self.grid, self.width = size, size // 16, chans[-1]
        self.attention, self.theta_mode, self.frames, self.use_au = mode, theta, frames, use_au
        self.theta_lr_scale, self.theta_weight_decay = float(theta_lr_scale), float(theta_weight_decay)

        self.stem = nn.Sequential(
            nn.Conv2d(3, cfg["stem_channels"], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cfg["stem_channels"]),
            nn.ReLU(inplace=True),
        )
        self.block = DirectionalAttentionBlock(
            cfg["stem_channels"], chans, (1, 2, 2, 2), mode=mode, continuous=continuous,
            theta_mode=theta, theta_init=theta_init,
        )
        if fpf == "swin":
            if 4 * cfg["swin_embed"] != self.width:
                raise MertoolError("facesleuth: swin_embed * 4 must equal the last motion width")
            self.fpf: nn.Module | None = SwinTransformer(
                size, 4, 3, cfg["swin_embed"], cfg["swin_depths"], cfg["swin_heads"], cfg["window"]
            )
            if fpf_weights is not None:
                load_swin_checkpoint(self.fpf, fpf_weights)
        elif fpf == "vit":
            self.fpf = SmallViT(size, 16, self.width, cfg["vit_depth"], cfg["vit_heads"])
        else:
            self.fpf = None
        if fpf_weights is not None and fpf != "swin":
            raise MertoolError("facesleuth: fpf_weights needs fpf='swin'")
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

        feat = self.width * (self.grid * self.grid if head == "flatten" else 1)
        self.pool = head == "pooled"
        n_in = feat + (NUM_AUS if use_au else 0)
        self.classifier = nn.Sequential(nn.BatchNorm1d(n_in), nn.ReLU(inplace=True), nn.Linear(n_in, num_classes))

    # -- forward ---------------------------------------------------------------------
    def features(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        """Fused motion + position map (B, C, S/16, S/16) from 0..255 frames."""
        onset, apex = onset.float(), apex.float()
        if onset.shape != apex.shape or onset.shape[1:] != (3, self.img_size, self.img_size):
            raise ValueError(
                f"facesleuth expects onset/apex of shape (B, 3, {self.img_size}, {self.img_size}), "
                f"got {tuple(onset.shape)} and {tuple(apex.shape)}"
            )
        x = self.block(self.stem((apex - onset) / 255.0))
        if self.fpf is not None:
            chosen = {"dual": [onset, apex], "onset": [onset], "apex": [apex]}[self.frames]
            frames = (torch.cat(chosen) - self.mean) / self.std  # both frames in one batch
            pos = self.fpf(frames).view(len(chosen), *x.shape).sum(0)
            x = x + pos
        return x

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, aus: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(onset, apex)
        x = x.mean((2, 3)) if self.pool else x.flatten(1)
        if self.use_au:
            if aus is None:
                raise ValueError("facesleuth with use_au=True needs the 21-d AU vector `aus`")
            x = torch.cat([x, aus.float().view(len(x), NUM_AUS)], dim=1)
        return self.classifier(x)

    # -- engine hooks ----------------------------------------------------------------
    def theta_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.block.thetas if p.requires_grad]

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups: everything else at (lr, wd); SOA angles at their own settings."""
        thetas = {id(p) for p in self.theta_parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in thetas]
        groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
        if thetas:
            groups.append(
                {"params": self.theta_parameters(), "lr": lr * self.theta_lr_scale,
                 "weight_decay": self.theta_weight_decay}
            )
        return groups

    def angles(self) -> list[float]:
        """SOA angle of each attention module in degrees ([0, 180)); empty without SOA."""
        return self.block.angles_deg()

    def epoch_log(self) -> dict[str, float]:
        """Per-epoch scalars for the run log: ``theta_deg_<module>`` for SOA models."""
        return {f"theta_deg_{i + 1}": a for i, a in enumerate(self.angles())}

    def load_weights(self, state: dict) -> None:
        """Load a FaceSleuth state_dict, or a reference-layout Swin checkpoint into the FPF."""
        inner = state.get("model") if isinstance(state.get("model"), dict) else state
        if any(str(k).removeprefix("module.").startswith("patch_embed.") for k in inner):
            if not isinstance(self.fpf, SwinTransformer):
                raise RuntimeError("a Swin checkpoint needs fpf='swin'")
            mapped, _ = map_swin_checkpoint(state, self.fpf)
            self.fpf.load_state_dict(mapped, strict=False)
            return
        self.load_state_dict(state)


# -- augmentation ------------------------------------------------------------------------
def pair_affine(flip: torch.Tensor, shift: torch.Tensor, angle_deg: torch.Tensor, size: int) -> torch.Tensor:
    """Affine matrices (N, 2, 3) for ``F.affine_grid`` (align_corners=False), square images.

    Output pixel p (centred coordinates) samples the input at ``Flip(R p + t)``: a
    horizontal flip, then a crop of the zero-padded image offset by ``t`` pixels, then
    a rotation by ``angle`` about the centre, as the papers' pipeline applies them.
    """
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.zeros(len(flip), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = sign * c, -sign * s
    theta[:, 1, 0], theta[:, 1, 1] = s, c
    theta[:, 0, 2] = sign * shift[:, 0] * 2 / size
    theta[:, 1, 2] = shift[:, 1] * 2 / size
    return theta


def transform_pair(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp a batch (N, C, S, S) with :func:`pair_affine` matrices (bilinear, zero fill)."""
    grid = F.affine_grid(theta.to(x.device, torch.float32), list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype) if x.dtype.is_floating_point else out


def augment_pair(
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    pad: int = 15,
    max_angle: float = 3.0,
    keys: tuple[str, ...] = ("onset", "apex"),
) -> dict[str, torch.Tensor]:
    """The papers' augmentation, identical for the onset and apex of each sample.

    Horizontal flip (p = 0.5), random crop of the ``pad``-pixel zero-padded frame
    (a shift of -pad..pad pixels per axis), rotation uniform in +-``max_angle`` degrees.
    Other entries (``aus``) pass through. Randomness comes from ``generator`` (CPU).
    """
    present = [k for k in keys if k in batch]
    if not present:
        return batch
    x0 = batch[present[0]]
    n, size = x0.shape[0], x0.shape[-1]
    flip = torch.rand(n, generator=generator) < 0.5
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=generator).float()
    angle = (torch.rand(n, generator=generator) * 2 - 1) * max_angle
    theta = pair_affine(flip, shift, angle, size)
    out = dict(batch)
    for k in present:
        out[k] = transform_pair(batch[k], theta)
    return out


# -- registry ----------------------------------------------------------------------------
DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 8e-4,
    "weight_decay": 0.6,
    "epochs": 75,
    "batch_size": 16,
    "accumulate": 2,
    "augment": "facesleuth_pair",
}

# name -> (builder kwargs, description). All ablation rows of the two papers.
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "facesleuth": ({}, "FaceSleuth: SOA (shared angle) + Swin FPF + AU, onset/apex pair (main config)"),
    "facesleuth-soa-independent": ({"theta": "independent"}, "FaceSleuth, SOA with one angle per module"),
    "facesleuth-soa-frozen0": ({"theta": "frozen", "theta_init": 0.0}, "FaceSleuth, SOA angle frozen at 0 (horizontal)"),
    "facesleuth-cva": ({"attention": "cva"}, "FaceSleuth with CVA (vertical attention, continuous)"),
    "facesleuth-cva-x": ({"attention": "x"}, "ablation: horizontal attention instead of CVA"),
    "facesleuth-cva-xy": ({"attention": "xy"}, "ablation: both directions (coordinate-attention style)"),
    "facesleuth-cva-independent": ({"attention": "cva", "continuous": False}, "ablation: CVA without chaining"),
    "facesleuth-cva-noau": ({"attention": "cva", "use_au": False}, "ablation: CVA model without AU embedding"),
    "facesleuth-cva-vit": ({"attention": "cva", "fpf": "vit"}, "ablation: FPF built on a ViT"),
    "facesleuth-cva-nofpf": ({"attention": "cva", "fpf": "none"}, "ablation: no position focaliser"),
    "facesleuth-cva-onset": ({"attention": "cva", "frames": "onset"}, "ablation: FPF on the onset frame only"),
    "facesleuth-cva-apex": ({"attention": "cva", "frames": "apex"}, "ablation: FPF on the apex frame only"),
    "facesleuth-pooled": ({"head": "pooled"}, "FaceSleuth with a compact pooled head"),
    "facesleuth-small": ({"preset": "small"}, "FaceSleuth (SOA shared) at 64x64, narrow: CPU tests and demos"),
}


def _register(name: str, kwargs: dict[str, Any], description: str) -> None:
    preset = PRESETS[kwargs.get("preset", "full")]
    size = preset["img_size"]
    meta = ("aus",) if kwargs.get("use_au", True) else ()
    spec = InputSpec(stage="pairs", arrays={"onset": (3, size, size), "apex": (3, size, size)}, meta=meta)

    small = kwargs.get("preset") == "small"
    source = "mertool: reduced size of the papers' network" if small else "paper: FaceSleuth (CVA-FPF-AU, SOA)"

    @register_model(name, spec, description=description, defaults=DEFAULTS, source=source)
    def build(num_classes: int, **overrides: Any) -> FaceSleuth:
        return FaceSleuth(num_classes, **{**kwargs, **overrides})


for _name, (_kwargs, _desc) in VARIANTS.items():
    _register(_name, _kwargs, _desc)


def parameter_table(num_classes: int = 5, preset: str = "full") -> list[tuple[str, int]]:
    """(variant, trainable parameters) for every registered variant at ``preset`` size."""
    rows = []
    for name, (kwargs, _) in VARIANTS.items():
        if kwargs.get("preset", preset) != preset:
            continue
        rows.append((name, count_parameters(FaceSleuth(num_classes, **{**kwargs, "preset": preset}))))
    return rows


__all__ = ["FaceSleuth", "VARIANTS", "DEFAULTS", "augment_pair", "pair_affine", "parameter_table"]
