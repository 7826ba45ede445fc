"""Swin Transformer (and a small ViT) in plain torch, as FaceSleuth's position focaliser.

The FPF of the papers is a three-stage Swin: patch 4, embed 128, depths [2, 2, 6],
heads [4, 8, 16], window 7. On a 224x224 frame the stages run at 56x56x128,
28x28x256 and 14x14x512 (patch merging at the end of stages 1 and 2), and the 196
output tokens are reshaped to a 512x14x14 map, the size of the motion features.

Blocks follow Liu et al. (2021): pre-norm window attention with a learned relative
position bias (a ``(2w-1)^2 x heads`` table indexed by the offset between two tokens),
every second block shifted by ``w // 2`` with an attention mask that keeps tokens from
different image regions apart, and a 4x MLP. A stage whose resolution is not larger
than the window uses one window and no shift.

Loading a local checkpoint (nothing is downloaded)
--------------------------------------------------
Parameter names are those of the reference Swin layout (the ``model`` dict of the
official ``swin_*_patch4_window7_224.pth`` files), so the mapping is by name:

==========================================  ===========================================
checkpoint key                              mertool ``SwinTransformer`` key
==========================================  ===========================================
``patch_embed.proj.*``, ``patch_embed.norm.*``  same
``layers.{i}.blocks.{j}.norm1/norm2.*``     same (for i < number of stages, j < depth)
``layers.{i}.blocks.{j}.attn.qkv.*``        same
``layers.{i}.blocks.{j}.attn.proj.*``       same
``layers.{i}.blocks.{j}.attn.relative_position_bias_table``  same (window 7 -> 169 rows)
``layers.{i}.blocks.{j}.mlp.fc1/fc2.*``     same
``layers.{i}.downsample.norm/reduction.*``  same for the stages that merge (not the last)
``norm.*``                                  ``norm.*`` only if the width matches
``relative_position_index``, ``attn_mask``  ignored (recomputed buffers)
``head.*``, deeper blocks/stages            ignored
==========================================  ===========================================

For example, Swin-B (embed 128, depths [2, 2, 18, 2]) fills the FPF completely except
its final norm: stage 3 takes the first 6 of its 18 blocks. A ``module.`` prefix and a
``model``/``state_dict`` wrapper are stripped. :func:`map_swin_checkpoint` returns the
mapped dict and the list of skipped keys; shapes must agree key by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ._factory import read_state_dict
from ..errors import MertoolError


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) index into the bias table: ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N)
    return rel[0] * (2 * window - 1) + rel[1]


def shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Additive mask (nW, N, N) for shifted windows: -100 between tokens of different regions.

    After a cyclic shift by ``shift`` some windows hold pixels from opposite image
    borders; labelling the 3 x 3 regions cut by the shift and masking label mismatches
    keeps attention within contiguous image areas.
    """
    labels = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    n = 0
    for hs in cuts:
        for ws in cuts:
            labels[:, hs, ws, :] = n
            n += 1
    lw = window_partition(labels, window)[..., 0]  # (nW, N)
    diff = lw[:, :, None] - lw[:, None, :]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def bias(self) -> torch.Tensor:
        n = self.window * self.window
        table = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return table.view(n, n, self.heads).permute(2, 0, 1)  # (heads, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias()  # (heads, N, N)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        else:
            # Windows are batch-major (b * nW + w): view them as (B, nW) so the
            # (nW, heads, N, N) mask broadcasts over the batch without copies.
            nw = mask.shape[0]
            shape = (bw // nw, nw, self.heads, n, c // self.heads)
            bias = (bias[None] + mask[:, None]).to(q.dtype)
            out = F.scaled_dot_product_attention(q.view(shape), k.view(shape), v.view(shape), attn_mask=bias)
            out = out.view(bw, self.heads, n, c // self.heads)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention + MLP, both residual."""

    def __init__(
        self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        h, w = resolution
        if min(h, w) <= window:  # one window covers the map: nothing to shift
            window, shift = min(h, w), 0
        if h % window or w % window:
            raise ValueError(f"resolution {h}x{w} is not a multiple of window {window}")
        self.resolution, self.window, self.shift = (h, w), window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shift_mask(h, w, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: concat (4C), LayerNorm, linear to 2C."""

    def __init__(self, dim: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(
        self, dim: int, resolution: tuple[int, int], depth: int, heads: int, window: int, downsample: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformer(nn.Module):
    """Swin encoder returning the last stage as a feature map (B, C_last, H', W').

    Parameters
    ----------
    img_size : int
        Input height = width.
    patch : int
        Patch size of the embedding.
    embed_dim : int
        Width of stage 1; it doubles at every patch merging.
    depths, heads : sequences of int
        Blocks and attention heads per stage; stages after the first start with a merge.
    window : int
        Window size (tokens per side).

    Notes
    -----
    ``img_size / patch / 2**(len(depths) - 1)`` is the output side; each stage's side
    must be a multiple of the window (or not larger than it). FaceSleuth's FPF:
    224, 4, 128, [2, 2, 6], [4, 8, 16], 7 -> (B, 512, 14, 14).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch: int = 4,
        in_chans: int = 3,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 6),
        heads: Sequence[int] = (4, 8, 16),
        window: int = 7,
    ) -> None:
        super().__init__()
        if len(depths) != len(heads):
            raise ValueError("depths and heads must have the same length")
        side = img_size // patch
        if side * patch != img_size or side % 2 ** (len(depths) - 1):
            raise ValueError(f"img_size {img_size} does not fit patch {patch} and {len(depths)} stages")
        self.patch_embed = PatchEmbed(patch, in_chans, embed_dim)
        stages = []
        dim = embed_dim
        for i, (depth, nh) in enumerate(zip(depths, heads)):
            last = i == len(depths) - 1
            stages.append(SwinStage(dim, (side, side), depth, nh, window, downsample=not last))
            if not last:
                dim, side = dim * 2, side // 2
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dim)
        self.out_dim, self.out_side = dim, side
        self.apply(_init_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x)
        for stage in self.layers:
            t = stage(t)
        t = self.norm(t)
        b = t.shape[0]
        return t.transpose(1, 2).reshape(b, self.out_dim, self.out_side, self.out_side)


class VitBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """Plain ViT (global attention, learned absolute positions) for the ``--fpf vit`` ablation.

    Patch ``img_size / out_side`` so the token grid equals the motion map (16 on 224 ->
    14x14), width ``dim`` equal to the motion channels.
    """

    def __init__(self, img_size: int = 224, patch: int = 16, dim: int = 512, depth: int = 6, heads: int = 8) -> None:
        super().__init__()
        if img_size % patch:
            raise ValueError(f"img_size {img_size} is not a multiple of patch {patch}")
        self.side = img_size // patch
        self.patch_embed = PatchEmbed(patch, 3, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.side * self.side, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(VitBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.apply(_init_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        return t.transpose(1, 2).reshape(t.shape[0], self.out_dim, self.side, self.side)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def map_swin_checkpoint(state: dict, model: SwinTransformer) -> tuple[dict, list[str]]:
    """Map a reference-layout Swin state dict onto ``model`` (see the module docstring).

    Returns
    -------
    mapped : dict
        Keys of ``model`` -> tensors to load (a subset; missing ones keep their init).
    skipped : list of str
        Checkpoint keys not used (head, deeper blocks, buffers, width mismatch of norm).

    Raises
    ------
    MertoolError
        If a matching key has another shape (e.g. a checkpoint with window 12), or
        nothing at all matches (not a Swin checkpoint).
    """
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    own = model.state_dict()
    mapped: dict = {}
    skipped: list[str] = []
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name not in own or not torch.is_tensor(value):
            skipped.append(key)
            continue
        if own[name].shape != value.shape:
            if name.startswith("norm."):
                skipped.append(key)
                continue
            raise MertoolError(
                f"Swin checkpoint key {key!r} has shape {tuple(value.shape)}, the FPF needs "
                f"{tuple(own[name].shape)} (window, embed width or heads differ)"
            )
        mapped[name] = value
    if not mapped:
        raise MertoolError("not a Swin checkpoint of the reference layout (no key matches the FPF)")
    return mapped, skipped


def load_swin_checkpoint(model: SwinTransformer, path: str | Path) -> list[str]:
    """Load a local Swin checkpoint file into ``model``; returns the skipped keys."""
    path = Path(path)
    state = read_state_dict(path, "Swin checkpoint")
    try:
        mapped, skipped = map_swin_checkpoint(state, model)
    except MertoolError as exc:
        raise MertoolError(f"{path}: {exc}") from None
    model.load_state_dict(mapped, strict=False)
    return skipped
