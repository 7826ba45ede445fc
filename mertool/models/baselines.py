"""Baselines of the MEGC 2019 comparison table, on onset-apex flow at 28x28.

``ststnet``
    STSTNet (Liong et al., FG 2019): u, v and optical strain stacked as 3 channels;
    three parallel 3x3 conv branches with 3, 5 and 8 filters ("same" padding, ReLU),
    each followed by 3x3 max pooling with stride 3 (28 -> 10); the 16 maps are
    concatenated, 2x2 average pooled (10 -> 5), flattened (400) and classified by one
    fully connected layer: 1,651 parameters for 3 classes. ``hidden=400`` inserts a
    400-unit ReLU layer before the classifier; that is the variant whose count,
    162,051, Off-TANet's Table 2 lists.
``offapexnet``
    Off-ApexNet (Gan et al., Signal Processing: Image Communication 2019): u and v as
    two streams, each conv5x5 (6) -> ReLU -> maxpool 2 -> conv5x5 (16) -> ReLU ->
    maxpool 2 ("same" padding, 28 -> 14 -> 7); the two 784-d vectors are concatenated
    and classified by FC 1024 -> FC 1024 -> FC classes with ReLU and dropout 0.5:
    2,664,475 parameters for 3 classes (Table 2 of Off-TANet: 2.66 M).

Both consume the ``flow`` stage at 28x28 (``mertool flow --size 28``); Off-ApexNet uses
channels 0 and 1 (u, v) and ignores the strain channel. Their ``defaults`` recipes (Adam;
STSTNet lr 5e-5, Off-ApexNet lr 1e-4) are starting points recalled from the papers, not
verified against their code; override them in the run config.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import InputSpec, register_model


class STSTNet(nn.Module):
    """Shallow triple-stream CNN over a ``B x 3 x 28 x 28`` (u, v, strain) tensor.

    Parameters
    ----------
    num_classes : int
        Output logits.
    filters : tuple of int
        Filters of the parallel 3x3 conv branches.
    hidden : int
        Units of an optional hidden FC layer before the classifier (0 = none, as in
        the STSTNet paper).
    batchnorm : bool
        Add BatchNorm after each branch's ReLU (used by some re-implementations).
    """

    def __init__(self, num_classes: int = 3, filters: tuple[int, ...] = (3, 5, 8), hidden: int = 0,
                 batchnorm: bool = False, in_channels: int = 3, size: int = 28) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 0 or not filters:
            raise ValueError("need num_classes >= 2, hidden >= 0 and at least one branch")
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, f, 3, padding=1),
                nn.ReLU(inplace=True),
                *([nn.BatchNorm2d(f)] if batchnorm else []),
                nn.MaxPool2d(3, stride=3, padding=1),
            )
            for f in filters
        )
        self.avgpool = nn.AvgPool2d(2)
        side = ((size + 2 - 3) // 3 + 1) // 2  # 28 -> 10 -> 5
        n_feat = sum(filters) * side * side
        head: list[nn.Module] = []
        if hidden:
            head += [nn.Linear(n_feat, hidden), nn.ReLU(inplace=True)]
            n_feat = hidden
        self.fc = nn.Sequential(*head, nn.Linear(n_feat, num_classes))

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        x = torch.cat([b(flow) for b in self.branches], dim=1)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class OffApexNet(nn.Module):
    """Two-stream (u, v) CNN over the first two channels of a ``B x 3 x 28 x 28`` flow."""

    def __init__(self, num_classes: int = 3, hidden: int = 1024, dropout: float = 0.5, size: int = 28) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 1:
            raise ValueError("need num_classes >= 2 and hidden >= 1")

        def stream() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            )

        self.stream_u = stream()
        self.stream_v = stream()
        n_feat = 2 * 16 * (size // 4) ** 2
        self.fc = nn.Sequential(
            nn.Linear(n_feat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        u = torch.flatten(self.stream_u(flow[:, 0:1]), 1)
        v = torch.flatten(self.stream_v(flow[:, 1:2]), 1)
        return self.fc(torch.cat([u, v], dim=1))


_FLOW28 = InputSpec(stage="flow", arrays={"flow": (3, 28, 28)})


@register_model(
    "ststnet",
    _FLOW28,
    description="STSTNet (FG 2019): three parallel 3x3 conv branches (3/5/8 filters) on u, v, strain",
    defaults={"optimizer": "adam", "lr": 5e-5, "weight_decay": 0.0, "batch_size": 256, "epochs": 500},
)
def build_ststnet(num_classes: int = 3, **kwargs: object) -> STSTNet:
    return STSTNet(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]


@register_model(
    "offapexnet",
    _FLOW28,
    description="Off-ApexNet (SPIC 2019): two-stream CNN on u and v, FC 1024-1024",
    defaults={"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 64, "epochs": 100},
)
def build_offapexnet(num_classes: int = 3, **kwargs: object) -> OffApexNet:
    return OffApexNet(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
