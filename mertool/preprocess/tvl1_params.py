"""The Dual TV-L1 parameter record shared by both backends (:mod:`.tvl1`, :mod:`.tvl1_torch`).

:class:`TVL1Params` is the one declaration of OpenCV's Dual TV-L1 parameters and defaults;
the CLI help, the flow stage's config and both solvers read it.
"""

from __future__ import annotations

import dataclasses
import numbers

BACKENDS = ("opencv", "torch")


@dataclasses.dataclass(frozen=True)
class TVL1Params:
    """Dual TV-L1 parameters, named and defaulted as OpenCV's ``DualTVL1OpticalFlow``.

    A record is checked when it is made (:meth:`validate`), so every function taking one
    can trust it.

    Attributes
    ----------
    tau : float
        Time step of the numerical scheme.
    lambda_ : float
        Weight of the data term (smaller: smoother flow).
    theta : float
        Coupling between the data and smoothness terms.
    nscales : int
        Pyramid levels (fewer when a level would be narrower than 16 px).
    warps : int
        Warps of the second image per level.
    epsilon : float
        Stopping threshold on the change of the flow.
    inner_iterations, outer_iterations : int
        Primal-dual iterations per outer step; outer steps per warp.
    scale_step : float
        Downscaling factor between pyramid levels, in (0, 1).
    gamma : float
        Weight of the illumination-change term (0 = off; the torch backend supports 0 only).
    median_filtering : int
        Median filter size applied to the flow: 1 (off), 3 or 5.
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field out of range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{field.name} must be a number, got {value!r}")
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
            value = getattr(self, name)
            if not float(value).is_integer() or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value}")
        for name in ("tau", "lambda_", "theta", "epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"scale_step must be in (0, 1), got {self.scale_step}")
        if self.median_filtering not in (1, 3, 5):
            raise ValueError(f"median_filtering must be 1 (off), 3 or 5, got {self.median_filtering}")


def check_backend(backend: str, params: TVL1Params) -> None:
    """Raise ``ValueError`` unless ``backend`` exists and can run ``params``.

    The torch solver has no illumination term, so it needs ``gamma = 0``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch" and params.gamma != 0:
        raise ValueError(f"gamma must be 0 for the torch backend (use backend opencv), got {params.gamma}")
