"""What a training run computes: :class:`TrainConfig`, its recipe resolution and its identity.

A config mixes three kinds of options: the *recipe* (optimiser, epochs, augmentation...;
left ``None``, they come from the model's registry ``defaults``, then
:data:`GLOBAL_DEFAULTS`), the *protocol* (split scheme, seed, oracle bookkeeping) and
*execution* switches (device, worker processes, checkpoint cadence, memory format). Only
the first two decide what is computed: :data:`IDENTITY_KEYS` lists them, and a run
directory resumes under any execution switches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import StageConfig, config_hash
from ..errors import MertoolError
from ..log import logger
from ..models import get_entry
from .augment import get_augment
from .loso import SCHEMES

# Engine defaults, used where neither the model's registry defaults nor the user set a value.
GLOBAL_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 32,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "momentum": 0.9,
    "lr_step": 0,
    "lr_gamma": 0.1,
    "augment": "none",
    "shuffle": True,
}
OPTIMIZERS = ("adam", "adamw", "sgd")
#: ``amp`` values: True (mixed precision on a GPU, bf16 where supported, else fp16 with a
#: gradient scaler; none on CPU), False (fp32), "bf16" (bf16 autocast on every device).
AMP_MODES = (True, False, "bf16")
#: ``channels_last`` values: "auto" (channels-last on a GPU, on CPU the model's measured
#: preference, ``ModelEntry.cpu_channels_last``; see :func:`~mertool.train.devices.channels_last_for`),
#: True (always NHWC), False (always NCHW).
CHANNELS_LAST_MODES = ("auto", True, False)


@dataclasses.dataclass
class TrainConfig(StageConfig):
    """Options of ``mertool train`` (YAML ``--config`` keys use these names).

    Recipe fields left ``None`` take the model's registry ``defaults``, then
    :data:`GLOBAL_DEFAULTS`; the run records the resolved values.
    """

    model: str = ""
    scheme: str = "loso"  # loso | kfold | fixed
    k: int = 5  # groups for kfold
    test_subjects: list = dataclasses.field(default_factory=list)  # for fixed
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None  # adam | adamw | sgd
    weight_decay: float | None = None
    momentum: float | None = None  # sgd only
    lr_step: int | None = None  # multiply lr by lr_gamma every lr_step epochs (0 = constant)
    lr_gamma: float | None = None
    augment: str | None = None  # see mertool.train.augment ("none", "hflip", "flow_hflip")
    shuffle: bool | None = None  # new random batch order every epoch (False: the samples' own order, fixed)
    accumulate: int = 1  # optimizer step every N batches (gradient accumulation)
    class_balanced: bool = False  # inverse-frequency class weights from each fold's training labels
    early_stopping: bool = False  # stop on validation loss (validation = training subjects only)
    val_fraction: float = 0.0  # share of each fold's training subjects held out (0.2 if early_stopping)
    patience: int = 20
    oracle: bool = False  # ALSO record best-epoch-on-test results, named *_ORACLE (papers' practice)
    min_class_samples: int = 0  # drop classes with fewer samples
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool | str = True  # True: the GPU's mixed precision (bf16, else fp16), none on CPU | False | "bf16": bf16 autocast on every device
    channels_last: bool | str = "auto"  # NHWC layout: "auto" (on GPUs; on CPU per model: ModelEntry.cpu_channels_last) | True | False
    jobs: int = 1  # folds trained in parallel worker processes (CPU)
    devices: list = dataclasses.field(default_factory=list)  # e.g. ["cuda:0", "cuda:1"]: one worker process per device (train.devices)
    fold_batch: int = 1  # folds trained as one stacked computation (1 = fold by fold, 0 = auto; see train.stacked)
    checkpoint_every: int = 5  # epochs between resumable checkpoints
    weights: str | None = None  # initial weights (state_dict) for every fold
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if not self.model:
            raise MertoolError("no model given: set model to a registered name (see `mertool models`)")
        if self.scheme not in SCHEMES:
            raise MertoolError(f"unknown scheme {self.scheme!r}; choose from {', '.join(SCHEMES)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise MertoolError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise MertoolError(f"{name} must be a positive integer, got {v!r}")
        if self.shuffle is not None and not isinstance(self.shuffle, bool):
            raise MertoolError(f"shuffle must be true or false, got {self.shuffle!r}")
        if self.lr is not None and not self.lr > 0:
            raise MertoolError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise MertoolError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.oracle and self.early_stopping:
            raise MertoolError("oracle and early_stopping exclude each other (oracle reports the fixed budget's epochs)")
        if self.jobs == 0 or self.jobs < -1:
            raise MertoolError(f"jobs must be >= 1 or -1 (all cores), got {self.jobs}")
        if self.amp not in AMP_MODES:
            raise MertoolError(f"amp must be true (the GPU's mixed precision), false or bf16, got {self.amp!r}")
        if self.channels_last not in CHANNELS_LAST_MODES or not isinstance(self.channels_last, (bool, str)):
            raise MertoolError(f"channels_last must be auto, true or false, got {self.channels_last!r}")
        if self.devices and (self.jobs != 1 or self.device != "auto"):
            raise MertoolError("devices gives one worker process per device: leave device (auto) and jobs (1) unset")
        if not isinstance(self.fold_batch, int) or self.fold_batch < 0:
            raise MertoolError(f"fold_batch must be a positive integer or 0 (auto), got {self.fold_batch!r}")
        if not isinstance(self.accumulate, int) or self.accumulate < 1:
            raise MertoolError(f"accumulate must be a positive integer, got {self.accumulate!r}")
        if self.patience < 1 or self.checkpoint_every < 1:
            raise MertoolError("patience and checkpoint_every must be >= 1")


#: The fields that decide what a run computes (recipe, protocol, model). Every other
#: field (device, devices, jobs, checkpoint_every, channels_last) only says how it is executed, so
#: a run directory resumes whatever their values.
IDENTITY_KEYS = (
    "model", "scheme", "k", "test_subjects", "epochs", "batch_size", "lr", "optimizer", "weight_decay",
    "momentum", "lr_step", "lr_gamma", "augment", "shuffle", "accumulate", "class_balanced", "early_stopping",
    "val_fraction", "patience", "oracle", "min_class_samples", "seed", "amp", "weights", "model_kwargs",
    "fold_batch",  # only whether folds are stacked (on a GPU their dropout draws differ from a fold alone's)
)
#: Identity fields added after run directories were first recorded, with the value every
#: earlier run had: at that value they stay out of the hash, so those directories resume.
LATER_KEYS: dict[str, Any] = {"shuffle": True, "fold_batch": 1}


def _identity_params(cfg: TrainConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    values = {k: getattr(cfg, k) for k in keys}
    if values.get("fold_batch", 1) != 1:  # every stacked grouping computes the same (per-replica streams)
        values["fold_batch"] = "stacked"
    return {k: v for k, v in values.items() if k not in LATER_KEYS or v != LATER_KEYS[k]}


def resolve_recipe(cfg: TrainConfig) -> TrainConfig:
    """Fill unset recipe fields from the model's registry defaults, then the engine's.

    Raises
    ------
    MertoolError
        Unknown model (with the closest names) or unknown augmentation.
    """
    entry = get_entry(cfg.model)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {}
    for name, default in GLOBAL_DEFAULTS.items():
        if getattr(cfg, name) is None:
            values[name] = entry.defaults.get(name, default)
    blank = TrainConfig(model=cfg.model)
    for name, default in entry.defaults.items():  # other recipe keys a model may set
        if name not in fields:
            logger.warning(f"model {cfg.model!r}: default {name!r} is not an engine option; ignored")
        elif name not in GLOBAL_DEFAULTS and getattr(cfg, name) == getattr(blank, name):
            values[name] = default
    out = dataclasses.replace(cfg, **values)
    if out.early_stopping and out.val_fraction == 0:
        out = dataclasses.replace(out, val_fraction=0.2)
    if callable(out.augment):
        raise MertoolError(f"model {cfg.model!r}: defaults['augment'] must name a registered augmentation")
    get_augment(out.augment)
    out.validate()
    return out


def identity(cfg: TrainConfig, input_key: str) -> str:
    """What makes two runs the same computation: the :data:`IDENTITY_KEYS` values and the input.

    Parameters
    ----------
    cfg : TrainConfig
        A resolved config (:func:`resolve_recipe`).
    input_key : str
        The features file's stage key.
    """
    return config_hash({"config": _identity_params(cfg, IDENTITY_KEYS), "input": input_key})


def legacy_identity(cfg: TrainConfig, input_key: str) -> str:
    """The identity mertool recorded before :data:`IDENTITY_KEYS`, for resuming older run directories.

    It hashed every field except device, jobs and checkpoint_every, so also ``channels_last``,
    which was then true or false (default true): ``"auto"`` hashes as that default.
    """
    params = _identity_params(cfg, (*IDENTITY_KEYS, "channels_last"))
    if params["channels_last"] == "auto":
        params["channels_last"] = True
    return config_hash({"config": params, "input": input_key})
