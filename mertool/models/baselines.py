"""Baselines of the MEGC 2019 comparison table, on onset-apex flow at 28x28, as their
authors trained them.

``ststnet`` (recipe source: the STSTNet authors' released training code)
    STSTNet (Liong et al., FG 2019). Three parallel branches on the same 3-channel input,
    each conv 3x3 with padding 2 (3, 5 and 8 filters; 28 -> 30) -> ReLU -> BatchNorm ->
    max-pool 3x3 stride 3 padding 1 (30 -> 10) -> dropout 0.5; the 16 maps concatenated,
    2x2 average pooled (10 -> 5), flattened (400) and classified by one linear layer:
    1,683 trainable parameters for 3 classes. Input: the widely shared composite
    (MEGC 2019) 28 x 28 u / v / strain images as OpenCV reads them (channels in the
    file's B, G, R order, values 0..255 as float, no normalisation): encoding
    ``minmax-byte``. Recipe: Adam lr 5e-5, batch 256, batches in a fixed order (no
    shuffling), 800 epochs, cross-entropy; the final model predicts the test subject.
    ``padding=1, batchnorm=False, dropout=0, hidden=400`` gives the re-implementation
    whose counts Off-TANet's Table 2 lists (162,051 parameters, 526.98 K torchstat FLOPs).
``ststnet-fast`` (recipe source: mertool)
    The same network with mertool's own recipe for signed flow (raw displacement, e.g.
    ``mertool flow --preset ststnet --normalise none``): Adam lr 1e-3, batch 32, shuffled,
    100 epochs. Why: the published recipe makes one optimiser step per epoch on sets
    smaller than its batch of 256, at an lr chosen for 0..255 inputs; on displacement of a
    few pixels it learns slowly (built-in quick set, 3-fold by subject, 100 epochs: UAR 0.47
    published recipe, 0.89 this one). Not a published setup; compare it with papers only as
    mertool's own.
``offapexnet`` (recipe source: the Off-TANet authors' comparison code)
    Off-ApexNet (Gan et al., Signal Processing: Image Communication 2019) as the
    Off-TANet authors set it up for their comparison: u and v as two streams, each conv
    5x5 (1 -> 6, padding 2) -> max-pool 2 -> conv 5x5 (6 -> 16, padding 2) -> max-pool 2,
    with no activation between (28 -> 14 -> 7); the two 784-d vectors concatenated (1,568)
    -> 1024 -> ReLU -> dropout 0.5 -> 1024 -> ReLU -> dropout 0.5 -> classes: 2,664,475
    parameters for 3 classes (Table 2 of Off-TANet: 2.66 M). Recipe: Adam lr 1e-4,
    batch 64, shuffled, 3000 epochs. Encoding ``signed``: the same comparison code feeds
    Off-TANet raw TV-L1 displacement (no normalisation) and sets Off-ApexNet up on that
    flow at 28 x 28.

All consume a ``flow``-kind stage file at 28x28 in their encoding (``mertool flow --preset
ststnet`` makes minmax-byte maps, ``--normalise none`` signed ones; or the composite images
brought in with ``mertool import``); Off-ApexNet reads channels 0 and 1 as u and v and
ignores channel 2.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import InputSpec, register_model


class STSTNet(nn.Module):
    """Shallow triple-stream CNN over a ``B x 3 x 28 x 28`` input.

    Parameters
    ----------
    num_classes : int
        Output logits.
    filters : tuple of int
        Filters of the parallel 3x3 conv branches.
    hidden : int
        Units of an optional hidden FC layer before the classifier (0 = none, as
        published).
    batchnorm : bool
        BatchNorm after each branch's ReLU (as published).
    dropout : float
        Dropout after each branch's max-pool (0.5 as published).
    padding : int
        Zero padding of the branch convs (2 as published: 28 -> 30).
    in_channels, size : int
        Input channels and side.
    """

    def __init__(self, num_classes: int = 3, filters: tuple[int, ...] = (3, 5, 8), hidden: int = 0,
                 batchnorm: bool = True, dropout: float = 0.5, padding: int = 2, in_channels: int = 3,
                 size: int = 28) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 0 or not filters or not 0 <= dropout < 1 or padding < 0:
            raise ValueError("need num_classes >= 2, hidden >= 0, a branch, 0 <= dropout < 1 and padding >= 0")
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, f, 3, padding=padding),
                nn.ReLU(inplace=True),
                *([nn.BatchNorm2d(f)] if batchnorm else []),
                nn.MaxPool2d(3, stride=3, padding=1),
                nn.Dropout(dropout),
            )
            for f in filters
        )
        self.avgpool = nn.AvgPool2d(2)
        side = ((size + 2 * padding - 2) - 1) // 3 + 1  # conv (k 3), then max-pool (k 3, s 3, p 1)
        n_feat = sum(filters) * (side // 2) ** 2
        head: list[nn.Module] = []
        if hidden:
            head += [nn.Linear(n_feat, hidden), nn.ReLU(inplace=True)]
            n_feat = hidden
        self.fc = nn.Sequential(*head, nn.Linear(n_feat, num_classes))

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        x = torch.cat([b(flow) for b in self.branches], dim=1)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class OffApexNet(nn.Module):
    """Two-stream (u, v) CNN over the first two channels of a ``B x 3 x 28 x 28`` flow.

    Parameters
    ----------
    num_classes : int
        Output logits.
    hidden : int
        Units of the two hidden FC layers (1024 as published).
    dropout : float
        Dropout after each hidden FC layer (0.5 as published).
    size : int
        Input side (a multiple of 4).
    """

    def __init__(self, num_classes: int = 3, hidden: int = 1024, dropout: float = 0.5, size: int = 28) -> None:
        super().__init__()
        if num_classes < 2 or hidden < 1:
            raise ValueError("need num_classes >= 2 and hidden >= 1")

        def stream() -> nn.Sequential:
            # No activation between the convs, as in the comparison code.
            return nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5, padding=2), nn.MaxPool2d(2),
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


_FLOW28 = {"flow": (3, 28, 28)}

#: STSTNet's published recipe (the authors' released training code).
STSTNET_RECIPE = {"optimizer": "adam", "lr": 5e-5, "weight_decay": 0.0, "batch_size": 256, "epochs": 800,
                  "shuffle": False, "augment": "none"}
#: mertool's own STSTNet recipe for signed flow (see the module notes for why).
STSTNET_FAST_RECIPE = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 32, "epochs": 100,
                       "shuffle": True, "augment": "none"}
#: Off-ApexNet as the Off-TANet authors' comparison code trains it.
OFFAPEXNET_RECIPE = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 64, "epochs": 3000,
                     "shuffle": True, "augment": "none"}


def build_ststnet(num_classes: int = 3, **kwargs: object) -> STSTNet:
    return STSTNet(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]


register_model(
    "ststnet", InputSpec(stage="flow", arrays=_FLOW28, encoding="minmax-byte"),
    description="STSTNet (FG 2019): three 3x3 conv branches (3/5/8 filters, BN, dropout) on composite u, v, strain",
    defaults=STSTNET_RECIPE, source="authors' code: STSTNet release (Liong et al., FG 2019)",
    cpu_channels_last=False,  # NCHW trains it 1.3-2x faster on CPU (benchmarks/README.md, "Memory layout")
)(build_ststnet)
register_model(
    "ststnet-fast", InputSpec(stage="flow", arrays=_FLOW28, encoding="signed"),
    description="STSTNet network with mertool's faster recipe, for signed flow (displacement)",
    defaults=STSTNET_FAST_RECIPE, source="mertool: learns in a short run on signed flow",
    cpu_channels_last=False,  # NCHW trains it 1.3-2x faster on CPU (benchmarks/README.md, "Memory layout")
)(build_ststnet)


@register_model(
    "offapexnet", InputSpec(stage="flow", arrays=_FLOW28, encoding="signed"),
    description="Off-ApexNet (SPIC 2019): two-stream CNN on u and v, FC 1024-1024",
    defaults=OFFAPEXNET_RECIPE, source="authors' code: Off-TANet's comparison code (Zhang et al., PRICAI 2021)",
)
def build_offapexnet(num_classes: int = 3, **kwargs: object) -> OffApexNet:
    return OffApexNet(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]
