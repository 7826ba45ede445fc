"""The one device resolver: every verb that runs torch picks its device here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import MertoolError, UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str = "auto") -> "torch.device":
    """``auto`` -> cuda when available, else cpu; a CUDA request without CUDA is an error.

    Parameters
    ----------
    name : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    UsageError
        Unknown name.
    MertoolError
        CUDA asked where torch sees none, or a GPU index that does not exist.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not name.startswith("cuda:"):
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise MertoolError(
            f"device {name!r} asked, but no CUDA device is available (torch {torch.__version__}, {build}); "
            "use --device cpu or --device auto"
        )
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MertoolError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev
