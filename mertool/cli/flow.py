"""``mertool flow``: onset->apex TV-L1 optical flow and optical strain."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..preprocess.strain import INVALID_MODES, NORMALISATIONS, STRAIN_FORMULAS, STRAIN_METHODS
from ..preprocess.tvl1_params import BACKENDS
from ..stages.flow import PAIR_MODES, FlowConfig, run_flow
from .common import (
    ConfigOption, ForModelOption, JobsOption, OverwriteOption, PreviewOption, SamplesOption, out_option, resolve_config,
)

_D = FlowConfig()  # defaults (the TV-L1 ones are TVL1Params', i.e. OpenCV's)
_RUN = inspect.signature(run_flow).parameters  # defaults of the run options
_FIELDS = [f.name for f in dataclasses.fields(FlowConfig)]


def _default(field: str) -> str:
    return f"[default: {getattr(_D, field)}]"


def _per_preset(field: str) -> str:
    values = ", ".join(f"{name} {preset[field]}" for name, preset in FlowConfig.PRESETS.items())
    return f"[default: per preset: {values}]"


#: The options whose scale convention takes a paragraph.
_SCALES = {
    "normalise": f"Per-sample scaling ({', '.join(NORMALISATIONS)}). none: u, v in pixels of the stored SIZE x SIZE "
    "grid, strain on the scale --strain gives; minmax: each channel to 0..1; minmax255: each channel to 0..255 (the "
    "composite MEGC 2019 images' scale); magnitude: u, v divided by the largest flow magnitude, strain by its largest "
    f"value {_per_preset('normalise')}.",
    "strain": f"Strain derivatives ({', '.join(STRAIN_METHODS)}). sobel: 3x3 Sobel divided by 8 and central: "
    "(f[x+1] - f[x-1]) / 2 are per pixel of the flow, so strain is dimensionless and kept as it is when resized; "
    "sobel-raw: cv2.Sobel's raw 3x3 output (8x the per-pixel derivative), the Off-TANet authors' scale "
    f"{_per_preset('strain')}.",
    "strain_formula": f"{' or '.join(STRAIN_FORMULAS)}. eq4: Off-TANet's Eq. 4, sqrt(u_x^2 + v_y^2 + (u_y + v_x)^2 / 2);"
    f" published: the authors' released code, u_y^2 in place of v_y^2 (bug-compatible reruns) {_default('strain_formula')}.",
    "invalid": f"{' or '.join(INVALID_MODES)}: map pixels that came from outside the source image (align's validity "
    f"mask) set to 0 after normalising over the valid ones, or kept {_default('invalid')}.",
}


def register(app: typer.Typer) -> None:
    @app.command(
        "flow",
        epilog=(
            "Example: mertool flow work/aligned.h5 -o work/flow.h5 --for-model offtanet "
            "--samples work/samples.csv --backend opencv --preview work/preview_flow "
            "(opencv is the faster backend on a CPU; on a GPU use --backend torch --device cuda)"
        ),
    )
    def flow(
        aligned_h5: Path = typer.Argument(..., help="aligned.h5 from `mertool align`."),
        out: Path = out_option("flow.h5 to write."),
        samples: Optional[Path] = SamplesOption,
        for_model: Optional[str] = ForModelOption,
        preset: Optional[str] = typer.Option(
            None, help=f"{' or '.join(FlowConfig.PRESETS)}: defaults of the options below {_default('preset')}."
        ),
        size: Optional[int] = typer.Option(
            None, help=f"Side of the stored u, v, strain maps, resized from the flow {_per_preset('size')}."
        ),
        flow_size: Optional[int] = typer.Option(
            None, help=f"Frames resized (bicubic) to this before the flow; 0 = aligned size {_per_preset('flow_size')}."
        ),
        pairs: Optional[str] = typer.Option(
            None, help=f"{' or '.join(PAIR_MODES)}: onset->apex, or onset->every frame {_default('pairs')}."
        ),
        normalise: Optional[str] = typer.Option(None, "--normalise", "--normalize", help=_SCALES["normalise"]),
        strain: Optional[str] = typer.Option(None, help=_SCALES["strain"]),
        strain_formula: Optional[str] = typer.Option(None, help=_SCALES["strain_formula"]),
        invalid: Optional[str] = typer.Option(None, help=_SCALES["invalid"]),
        backend: Optional[str] = typer.Option(
            None, help=f"TV-L1 implementation: {' or '.join(BACKENDS)} {_default('backend')}."
        ),
        device: str = typer.Option(_RUN["device"].default, help="torch backend device: auto, cpu, cuda or cuda:N."),
        batch_size: int = typer.Option(_RUN["batch_size"].default, help="torch backend: samples (and pairs) solved at once."),
        compile: bool = typer.Option(
            _RUN["compile"].default, "--compile",
            help="torch backend: fuse the solver with torch.compile (GPU speed-up after a one-off compile).",
        ),
        tau: Optional[float] = typer.Option(None, help=f"TV-L1 time step {_default('tau')}."),
        lambda_: Optional[float] = typer.Option(None, "--lambda", help=f"TV-L1 data weight {_default('lambda_')}."),
        theta: Optional[float] = typer.Option(None, help=f"TV-L1 coupling {_default('theta')}."),
        nscales: Optional[int] = typer.Option(None, help=f"Pyramid levels {_default('nscales')}."),
        warps: Optional[int] = typer.Option(None, help=f"Warps per level {_default('warps')}."),
        epsilon: Optional[float] = typer.Option(None, help=f"Stopping threshold {_default('epsilon')}."),
        inner_iterations: Optional[int] = typer.Option(None, help=f"Inner iterations {_default('inner_iterations')}."),
        outer_iterations: Optional[int] = typer.Option(None, help=f"Outer iterations {_default('outer_iterations')}."),
        scale_step: Optional[float] = typer.Option(None, help=f"Pyramid scale step {_default('scale_step')}."),
        gamma: Optional[float] = typer.Option(
            None, help=f"Illumination term weight, opencv backend only {_default('gamma')}."
        ),
        median_filtering: Optional[int] = typer.Option(
            None, help=f"Median filter size of the flow: 1 (off), 3 or 5 {_default('median_filtering')}."
        ),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """TV-L1 optical flow (u, v) and optical strain between onset and apex, as N x 3 x S x S."""
        options = locals()  # the parameters above, by name: the config fields among them are passed on
        setup_cli_logging()
        cfg = resolve_config(FlowConfig, config, "flow", for_model, **{name: options.get(name) for name in _FIELDS})
        result = run_flow(
            aligned_h5, out, cfg, samples_csv=samples, jobs=jobs, overwrite=overwrite, preview=preview,
            device=device, batch_size=batch_size, compile=compile,
        )
        typer.echo(result.summary(f"flow {cfg.size}x{cfg.size} ({cfg.backend})"))
