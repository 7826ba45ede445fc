"""The ``spot`` stage: micro- and macro-expression intervals in long videos.

Reads a samples.csv and spots in every video it names (each distinct frames folder or
video file, over all its frames, whatever onset and offset its rows give: one row per
recording, or one per annotated expression as the long-video adapters write). Per video:

1. frames are read in chunks, every ``stride``-th only (``stride = round(fps / rate)``:
   200 fps video is analysed at 50 Hz), so a long video is never held in memory;
2. alignment: one crop transform from the video's first frame
   (:func:`mertool.preprocess.align.align_clip` on that frame), applied to every frame
   (``mertool align`` keeps a clip's frames in memory and stores them all, so it does not
   stream long videos; this stage aligns chunk by chunk instead);
3. per-frame features in landmark regions, feature-difference curves, contrast,
   threshold and intervals (:mod:`mertool.preprocess.spotting`).

Outputs, for ``-o spots.csv``:

- ``spots.h5`` (stage ``"spots"``, per video): ``frame_numbers`` (the analysed frames),
  the curves (``micro``, ``micro_contrast``, ``macro``, ``macro_contrast``),
  ``intervals`` (N x 3 frame numbers: onset, apex, offset) and ``scores``; meta:
  ``subject``, ``dataset``, ``clip``, ``frames`` / ``video`` (the source), ``fps``,
  ``stride``, ``rate`` (analysed), ``first_frame``, ``last_frame``, ``n_intervals`` and
  each pass's threshold (``micro_level``, ``macro_level``). Resumable like every stage;
  ``--jobs`` runs videos in parallel;
- ``spots.csv``: ``video, subject, onset, apex, offset, type, score, seconds`` (one row
  per interval, frame numbers of the video; ``type`` micro when at most 0.5 s);
- ``spots_samples.csv``: the spotted intervals as a samples.csv (label = type, apex
  source ``spotted:<method>``) that ``mertool align`` / ``flow`` / ``dynimg`` / ``predict``
  take as is.

A video too short for the micro window, or with an unreadable frame, fails with its
reason (``mertool info spots.h5`` lists it); the others finish.

Evaluation (:func:`evaluate_spots`, ``mertool spot --evaluate SHEET``): the ground truth
is a samples.csv of intervals (``mertool index`` with a long-video adapter, or the
synthetic set's manifest), matched to the spotted videos by their frames folder or video
file; its ``label`` gives the type when it is micro or macro, else the duration does.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from ..config import StageConfig
from ..errors import MertoolError
from ..io import atomic_write_text
from ..log import logger
from ..preprocess import spotting
from ..preprocess.align import CROP_POLICIES, align_clip, warp
from ..samples import Sample, clip_fingerprints, decoder_messages, read_image, read_samples, to_rgb8, write_samples
from ..table import format_table
from ._driver import Case, StageResult, run_stage
from .stagefile import StageFile, StageWriter, open_stage

CSV_COLUMNS = ["video", "subject", "onset", "apex", "offset", "type", "score", "seconds"]
EVAL_COLUMNS = ["scope", "name", "type", "tp", "fp", "fn", "precision", "recall", "f1"]
CHUNK = 128  # frames read, aligned and featurised at a time


@dataclasses.dataclass
class SpotConfig(StageConfig):
    """Options of the ``spot`` stage (recorded in spots.h5).

    Attributes
    ----------
    method : {"flow", "lbp"}
        Per-frame features (:mod:`mertool.preprocess.spotting`): block optical flow
        (default) or block LBP histograms (the classic chi-square method).
    fps : float or None
        Frame rate of the videos; None takes each video's dataset's
        (:data:`mertool.datasets.longvideo.FRAME_RATES`).
    rate : float
        Frames per second analysed: every ``round(fps / rate)``-th frame is used. The
        windows are in seconds and the threshold in noise units, so one set of defaults
        serves every frame rate: 200 fps video is analysed at 50 Hz, 30 fps at 30 Hz. (At
        200 Hz the flow paths gather more error between the frames a window compares:
        micro recall fell from 0.88 to 0.54 on the development set.)
    micro_window, macro_window : float
        Half windows (seconds) of the micro and macro passes (``macro_window`` 0: micro only).
    z : float
        Threshold: a contrast peak must clear ``z`` robust standard deviations of the
        difference curve's noise (:func:`mertool.preprocess.spotting.threshold`).
    regions : str
        Comma-separated landmark regions (brows, eyes, nose, mouth).
    size, margin, detector, upsample, crop, interpolation
        Alignment, as ``mertool align`` (crop ``similarity``, ``box`` or ``none``;
        interpolation ``linear`` by default: the features are block averages).
    """

    method: str = "flow"
    fps: Optional[float] = None
    rate: float = 50.0
    micro_window: float = 0.15
    macro_window: float = 0.6
    z: float = 3.0
    regions: str = ",".join(spotting.DEFAULT_REGIONS)
    size: int = 224
    margin: float = 0.1
    detector: str = "hog"
    upsample: int = 1
    crop: str = "similarity"
    interpolation: str = "linear"

    def validate(self) -> None:
        if self.method not in spotting.METHODS:
            raise MertoolError(f"method must be one of {', '.join(spotting.METHODS)}, got {self.method!r}")
        if self.fps is not None and not 1 <= self.fps <= 10000:
            raise MertoolError(f"fps must be within 1..10000, got {self.fps}")
        if not 1 <= self.rate <= 10000:
            raise MertoolError(f"rate must be within 1..10000, got {self.rate}")
        if not 0 < self.micro_window <= 10 or not (self.macro_window == 0 or self.micro_window < self.macro_window <= 10):
            raise MertoolError(
                "need 0 < micro_window < macro_window <= 10 seconds (macro_window 0: micro only), got "
                f"micro_window {self.micro_window}, macro_window {self.macro_window}"
            )
        if not 0 < self.z <= 100:
            raise MertoolError(f"z must be within 0..100, got {self.z}")
        bad = [r for r in self.region_names() if r not in spotting.REGIONS]
        if bad or not self.region_names():
            raise MertoolError(f"regions must be among {', '.join(spotting.REGIONS)}, got {self.regions!r}")
        if self.crop not in CROP_POLICIES or self.interpolation not in ("cubic", "linear"):
            raise MertoolError(f"crop must be one of {', '.join(CROP_POLICIES)} and interpolation cubic or linear")
        if not 32 <= self.size <= 1024 or not 0 <= self.margin < 2 or self.detector not in ("hog", "cnn"):
            raise MertoolError(f"size 32..1024, margin 0..2, detector hog or cnn (got {self.size}, {self.margin}, {self.detector!r})")

    def region_names(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in str(self.regions).split(",") if r.strip())


# --------------------------------------------------------------------------- videos


@dataclasses.dataclass(frozen=True)
class Video:
    """A video to spot in: ``sample`` locates its frames (``sample_id`` is the video's name)."""

    sample: Sample
    fps: float


def _fps(sample: Sample, fps: float | None) -> float:
    if fps is not None:
        return float(fps)
    from ..datasets.longvideo import frame_rate  # the adapters import pandas: not at start-up

    found = frame_rate(sample.dataset)
    if found is None:
        raise MertoolError(
            f"{sample.source()}: the frame rate of dataset {sample.dataset!r} is not known; pass --fps"
        )
    return found


def videos_of(samples: list[Sample], fps: float | None) -> dict[str, Video]:
    """The distinct videos (frames folder or video file) of samples.csv rows, named by their
    folder or file name (prefixed with the subject where two share a name)."""
    first: dict[str, Sample] = {}
    for s in samples:
        first.setdefault(s.source(), s)
    names = {src: Path(src).stem if s.video else Path(src).name for src, s in first.items()}
    taken: dict[str, int] = {}
    for name in names.values():
        taken[name] = taken.get(name, 0) + 1
    out: dict[str, Video] = {}
    for src, s in first.items():
        name = names[src] if taken[names[src]] == 1 else f"{s.subject}_{names[src]}"
        while name in out:
            name += "_"
        video = Sample(name, s.subject, 0, -1, 0, "", s.dataset, names[src], frames=s.frames, video=s.video)
        out[name] = Video(video, _fps(s, fps))
    return out


def frame_chunks(sample: Sample, stride: int, chunk: int = CHUNK) -> Iterator[tuple[list[int], list[np.ndarray], int]]:
    """Every ``stride``-th frame of a video, ``chunk`` at a time: (frame numbers, RGB
    frames, the video's last frame number so far).

    Raises
    ------
    MertoolError
        A frame (or the video) cannot be read; the message names it.
    """
    if sample.frames:
        full = sample.frame_table()
        table = full[::stride]
        for i in range(0, len(table), chunk):
            part = table[i : i + chunk]
            yield [n for n, _ in part], [read_image(p) for _, p in part], full[-1][0]
        return
    if not Path(sample.video).is_file():
        raise MertoolError(f"{sample.video}: video not found")
    cap = cv2.VideoCapture(sample.video)
    if not cap.isOpened():
        raise MertoolError(f"{sample.video}: cannot open video")
    number, done = 0, False
    try:
        while not done:
            numbers, frames = [], []
            with decoder_messages() as messages:
                while len(frames) < chunk:
                    ok, frame = cap.read()
                    if not ok:
                        done = True
                        break
                    number += 1
                    if (number - 1) % stride == 0:
                        numbers.append(number)
                        frames.append(to_rgb8(frame, bgr=True))
            if messages:
                raise MertoolError(f"{sample.video}: a frame fails to decode near frame {number} (decoder: {messages[0]})")
            if frames or (done and number):
                yield numbers, frames, number
    finally:
        cap.release()


# --------------------------------------------------------------------------- compute


def _features(video: Video, stride: int, config: SpotConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """(analysed frame numbers, per-frame block features, last frame number) of one video,
    chunk by chunk."""
    numbers: list[int] = []
    last = 0
    feats: list[np.ndarray] = []
    transform = blocks = previous = None
    options = {k: getattr(config, k) for k in ("crop", "size", "margin", "detector", "upsample", "interpolation")}
    for part, frames, last in frame_chunks(video.sample, stride):
        if not frames:
            continue
        if transform is None:
            try:
                first = align_clip(frames[:1], **options)
            except LookupError:
                raise LookupError(
                    f"no face found on the first frame of {video.sample.source()} (--crop {config.crop}); try "
                    "--upsample 2 or --detector cnn, or --crop none for frames that are already face crops"
                ) from None
            transform = first["transform"]
            blocks = spotting.region_blocks(first["landmarks"], (config.size, config.size), regions=config.region_names())
        gray = np.stack([warp(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), transform, config.size, config.interpolation) for f in frames])
        if config.method == "flow":
            feats.append(spotting.flow_features(gray, blocks, previous))
            previous = gray[-1]
        else:
            feats.append(spotting.lbp_features(gray, blocks))
        numbers += part
    if not numbers:
        raise ValueError(f"{video.sample.source()}: no frames")
    return np.asarray(numbers, dtype=np.int64), np.concatenate(feats), last


def spot_case(case: Case, *, config: SpotConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Spot in one video (module-level: runs in worker processes).

    Raises
    ------
    ValueError
        The video is shorter than the micro window.
    LookupError
        No face on its first frame.
    MertoolError
        A frame cannot be read.
    """
    video: Video = case.inputs
    stride = max(1, int(round(video.fps / config.rate)))
    rate = video.fps / stride
    numbers, feats, last = _features(video, stride, config)
    need = 2 * max(1, int(round(config.micro_window * rate))) + 1
    if len(numbers) < need:
        raise ValueError(
            f"video {video.sample.sample_id} ({video.sample.source()}): {len(numbers)} analysed frames "
            f"({len(numbers) * stride / video.fps:.2f} s at {video.fps:g} fps) is shorter than the spotting window "
            f"({need} frames at {rate:g} Hz, 2 x --micro-window {config.micro_window:g} s)"
        )
    found, curves = spotting.spot(feats, fps=rate, method=config.method, micro_window=config.micro_window,
                                  macro_window=config.macro_window, z=config.z)
    intervals = np.array([[numbers[iv.onset], numbers[iv.apex], numbers[iv.offset]] for iv in found], np.int64).reshape(-1, 3)
    arrays = {"frame_numbers": numbers, "intervals": intervals, "scores": np.array([iv.score for iv in found], np.float64)}
    arrays.update({k: v for k, v in curves.items() if not k.endswith("_level")})
    update = {"stride": stride, "rate": rate, "n_intervals": len(found), "first_frame": int(numbers[0]), "last_frame": last}
    update.update({k: float(v[0]) for k, v in curves.items() if k.endswith("_level")})
    return arrays, update


# --------------------------------------------------------------------------- run


@dataclasses.dataclass(frozen=True)
class SpotResult:
    """What a spot run produced: the stage file's result, the CSVs and the interval counts."""

    stage: StageResult
    csv: Path
    samples: Path
    counts: dict[str, int]

    def summary(self) -> str:
        """``OUT.csv: 24 intervals (20 micro, 4 macro) in 8 of 8 videos; clips: OUT_samples.csv``."""
        n = sum(self.counts.values())
        return (
            f"{self.csv}: {n} intervals ({self.counts.get('micro', 0)} micro, {self.counts.get('macro', 0)} macro) "
            f"in {self.stage.done} of {self.stage.total} videos; spotted clips: {self.samples}"
            + (" (up to date)" if self.stage.up_to_date else "")
        )


def output_paths(out_csv: str | Path) -> tuple[Path, Path, Path]:
    """(spots.h5, spots.csv, spots_samples.csv) of ``-o spots.csv``.

    Raises
    ------
    MertoolError
        ``out_csv`` does not end in ``.csv``.
    """
    out = Path(out_csv)
    if out.suffix.lower() != ".csv":
        raise MertoolError(f"{out}: give the spotting CSV to write (e.g. work/spots.csv); spots.h5 is written beside it")
    return out.with_suffix(".h5"), out, out.with_name(out.stem + "_samples.csv")


def _video_meta(video: Video) -> dict[str, Any]:
    s = video.sample
    return {"subject": s.subject, "dataset": s.dataset, "clip": s.clip, "frames": s.frames, "video": s.video, "fps": video.fps}


def run_spot(
    samples_csv: str | Path,
    out_csv: str | Path,
    config: SpotConfig | None = None,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> SpotResult:
    """The ``spot`` stage: samples.csv -> spots.h5, spots.csv, spots_samples.csv (see the module docstring).

    Parameters
    ----------
    samples_csv : path
        Rows naming the videos (recorded as the upstream).
    out_csv : path
        The spotting CSV to write (``.csv``); the stage file and the spotted clips' samples.csv
        go beside it (:func:`output_paths`).
    config : SpotConfig, optional
    jobs : int
        Videos spotted in parallel (-1 = all cores).
    overwrite : bool
        Replace outputs made with other parameters or inputs.
    progress : bool
        Show a progress bar.

    Raises
    ------
    MertoolError
        Bad options or samples.csv, an unknown frame rate, missing dlib models, or no video
        could be spotted.
    """
    from .. import faces

    config = config or SpotConfig()
    config.validate()
    h5, csv_path, clips = output_paths(out_csv)
    videos = videos_of(read_samples(samples_csv), config.fps)
    if not videos:
        raise MertoolError(f"{samples_csv}: no rows, so no video to spot in")
    fingerprints = clip_fingerprints(v.sample for v in videos.values())
    writer = StageWriter(h5, "spots", config.to_dict(), upstream=[samples_csv], overwrite=overwrite, fingerprints=fingerprints)
    if not writer.complete:  # a missing dlib model is the installation's problem, not each video's
        faces.face_detector(config.detector)
        faces.landmark_model()
    result = run_stage(
        writer,
        list(videos),
        lambda vid: Case(vid, _video_meta(videos[vid]), videos[vid]),
        functools.partial(spot_case, config=config),
        stacked=False,
        desc="spot",
        jobs=jobs,
        progress=progress,
    )
    sf = open_stage(result.path, expect="spots")
    rows = spotted_rows(sf)
    atomic_write_text(csv_path, format_table(rows, CSV_COLUMNS, "csv") + "\n")
    write_samples(spotted_samples(sf), clips)
    counts = {kind: sum(r["type"] == kind for r in rows) for kind in ("micro", "macro")}
    return SpotResult(result, csv_path, clips, counts)


def _intervals(sf: StageFile, video: str) -> list[tuple[int, int, int, float, str]]:
    """(onset, apex, offset, score, type) of one video of a spots.h5."""
    arrays = sf.sample(video, ["intervals", "scores"])
    fps = float(sf.meta_of(video)["fps"])
    return [
        (int(a), int(b), int(c), float(score), spotting.kind_of(int(c) - int(a) + 1, fps))
        for (a, b, c), score in zip(arrays["intervals"].reshape(-1, 3), arrays["scores"])
    ]


def spotted_rows(sf: StageFile) -> list[dict[str, Any]]:
    """The rows of spots.csv (see the module docstring), video by video in time order."""
    rows = []
    for video in sf.sample_ids:
        meta = sf.meta_of(video)
        for onset, apex, offset, score, kind in _intervals(sf, video):
            rows.append({"video": video, "subject": meta["subject"], "onset": onset, "apex": apex, "offset": offset,
                         "type": kind, "score": round(score, 3), "seconds": round((offset - onset + 1) / float(meta["fps"]), 3)})
    return rows


def spotted_samples(sf: StageFile) -> list[Sample]:
    """The spotted intervals as samples.csv rows: ``<video>_<k>``, label = type."""
    out = []
    for video in sf.sample_ids:
        meta = sf.meta_of(video)
        for k, (onset, apex, offset, _, kind) in enumerate(_intervals(sf, video), start=1):
            out.append(Sample(f"{video}_{k:03d}", meta["subject"], onset, apex, offset, kind, meta["dataset"], video,
                              frames=meta["frames"], video=meta["video"], apex_source=f"spotted:{sf.params.get('method')}"))
    return out


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """MEGC-style scores (:func:`mertool.preprocess.spotting.evaluate` rows) and where they went."""

    rows: list[dict[str, Any]]
    path: Path
    left_out: int = 0
    truth: dict[str, tuple[str, list[tuple[int, int, str]]]] = dataclasses.field(default_factory=dict)

    def row(self, kind: str = "micro", scope: str = "overall", name: str = "all") -> dict[str, Any]:
        return next(r for r in self.rows if (r["scope"], r["name"], r["type"]) == (scope, name, kind))

    def table(self, scopes: tuple[str, ...] = ("overall", "subject")) -> str:
        """An aligned text table of the rows of ``scopes``."""
        rows = [r for r in self.rows if r["scope"] in scopes]
        return format_table(rows, EVAL_COLUMNS, align="lllrrrrrr")

    def summary(self) -> str:
        """One line: F1 (precision, recall; counts) for micro, macro and all."""
        parts = []
        for kind in ("micro", "macro", "all"):
            r = self.row(kind)
            parts.append(f"{kind} F1 {r['f1']:.3f} (P {r['precision']:.3f} R {r['recall']:.3f}; TP {r['tp']} FP {r['fp']} FN {r['fn']})")
        return "; ".join(parts) + f"; rows in {self.path}"


def _truth(sf: StageFile, truth_csv: str | Path) -> tuple[dict[str, tuple[str, list[tuple[int, int, str]]]], int]:
    """The ground truth per spotted video (subject, intervals), and how many rows were left out."""
    from ..datasets.longvideo import check_intervals  # the adapters import pandas: not at start-up

    videos = {str(Path(m["frames"] or m["video"]).resolve()): v for v, m in ((v, sf.meta_of(v)) for v in sf.sample_ids)}
    rows = read_samples(truth_csv)
    name = Path(truth_csv).name
    located = [(f"{name}:{i + 2} ({s.sample_id})", videos.get(str(Path(s.source()).resolve()), ""), s) for i, s in enumerate(rows)]
    missing = sorted({s.source() for _, v, s in located if not v})
    if missing:
        logger.warning(
            f"{truth_csv}: {sum(not v for _, v, _ in located)} interval(s) in {len(missing)} video(s) that were not spotted "
            f"(not in the input, or failed: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): counted as missed"
        )
    ranges = {v: (int(sf.meta_of(v)["first_frame"]), int(sf.meta_of(v)["last_frame"])) for v in sf.sample_ids}
    keyed = [(where, v or s.source(), s.onset, s.offset) for where, v, s in located]
    outside, lines = check_intervals(keyed, ranges)
    for line in lines:
        logger.warning(line)
    out: dict[str, tuple[str, list[tuple[int, int, str]]]] = {v: (sf.meta_of(v)["subject"], []) for v in sf.sample_ids}
    for i, (where, video, s) in enumerate(located):
        if i in outside:
            continue
        if s.label in ("micro", "macro"):
            kind = s.label
        else:  # by duration, at the video's frame rate (a video not spotted: the run's --fps or its dataset's)
            kind = spotting.kind_of(s.offset - s.onset + 1, float(sf.meta_of(video)["fps"]) if video else _fps(s, sf.params.get("fps")))
        out.setdefault(video or s.source(), (s.subject, []))[1].append((s.onset, s.offset, kind))
    return out, len(outside)


def evaluate_spots(spots: str | Path, truth_csv: str | Path, out: str | Path | None = None) -> EvalResult:
    """Score a spot run against ground-truth intervals, MEGC style (see the module docstring).

    Parameters
    ----------
    spots : path
        The spotting CSV (``-o`` of the run) or its ``spots.h5``.
    truth_csv : path
        samples.csv of true intervals.
    out : path, optional
        CSV of the scores (default: ``<spots>_eval.csv``).

    Raises
    ------
    MertoolError
        Missing or foreign files.
    """
    h5 = Path(spots) if Path(spots).suffix == ".h5" else output_paths(spots)[0]
    sf = open_stage(h5, expect="spots")
    truth, left_out = _truth(sf, truth_csv)
    spotted = {v: [(a, c, kind) for a, _, c, _, kind in _intervals(sf, v)] for v in sf.sample_ids}
    videos = {v: (subject, spotted.get(v, []), intervals) for v, (subject, intervals) in truth.items()}
    rows = spotting.evaluate(videos)
    path = Path(out) if out is not None else h5.with_name(h5.stem + "_eval.csv")
    atomic_write_text(path, format_table(rows, EVAL_COLUMNS, "csv") + "\n")
    return EvalResult(rows, path, left_out, truth)


# --------------------------------------------------------------------------- pictures


def write_preview(
    spots: str | Path,
    folder: str | Path,
    scores: EvalResult | None = None,
    max_videos: int = 8,
    videos: list[str] | None = None,
) -> list[Path]:
    """One PNG per video (``videos``, or the first ``max_videos``): each pass's difference
    curve, contrast and threshold against time, the spotted intervals and, with the
    ``scores`` of :func:`evaluate_spots`, the true ones.

    Returns
    -------
    list of Path
        ``FOLDER/spot_<video>.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h5 = Path(spots) if Path(spots).suffix == ".h5" else output_paths(spots)[0]
    sf = open_stage(h5, expect="spots")
    truth = scores.truth if scores is not None else {}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for video in videos if videos is not None else sf.sample_ids[:max_videos]:
        fig = _video_figure(plt, sf, video, truth.get(video, ("", []))[1])
        path = folder / f"spot_{video.replace('/', '_')}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


_COLOURS = {"micro": "tab:green", "macro": "tab:orange"}


def _video_figure(plt: Any, sf: StageFile, video: str, truth: list[tuple[int, int, str]]) -> Any:
    """The figure of one video (see :func:`write_preview`)."""
    meta = sf.meta_of(video)
    fps = float(meta["fps"])
    arrays = sf.sample(video)
    names = [n for n in ("micro", "macro") if f"{n}_contrast" in arrays]
    t = arrays["frame_numbers"] / fps
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        ax.plot(t, arrays[name], color="0.6", lw=0.8, label="feature difference")
        ax.plot(t, arrays[f"{name}_contrast"], color="tab:blue", lw=1.0, label="contrast")
        ax.axhline(float(meta[f"{name}_level"]), color="tab:red", lw=0.8, ls="--", label="threshold")
        for onset, offset, kind in truth:
            ax.axvspan(onset / fps, offset / fps, color=_COLOURS[kind], alpha=0.25, lw=0)
        for onset, _, offset, _, kind in _intervals(sf, video):
            if kind == name:
                ax.hlines(0.97, onset / fps, offset / fps, transform=ax.get_xaxis_transform(), color="k", lw=3)
        ax.set_ylabel(f"{name} pass")
    axes[0, 0].set_title(f"{video}: true micro (green) / macro (orange) intervals, spotted (black bars)", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", fontsize=7, ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
