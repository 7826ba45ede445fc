"""Synthetic long videos with micro- and macro-expressions at known intervals (spotting data).

Ground truth to develop and benchmark ``mertool spot`` against, made from the pieces of
:mod:`mertool.synth`: its subjects (real faces from installed packages, each with its own
pose, light and noise), its landmark-anchored AU motion fields, raised-cosine intensity
profiles, eyelid field and frame renderer.

A video is ``seconds`` long at ``fps`` frames per second (frames numbered 1..N) and holds,
at random non-overlapping places at least ``gap`` seconds apart:

- ``micro`` micro-expressions: ``micro_seconds`` long (onset to offset), apex displacement
  ``micro_amplitude`` pixels, an AU class from ``classes``;
- ``macro`` macro-expressions: ``macro_seconds`` long, ``macro_amplitude`` pixels;
- blinks (distractors, not ground truth): on average ``blinks`` per minute (fewer where
  they would not fit), each ``blink_seconds`` long.

Throughout: head drift (a smooth translation of up to ``drift`` pixels, the sum of two slow
sines per axis), sub-pixel jitter (a random walk bounded by ``jitter``), idle facial motion
(one AU field at up to ``idle`` pixels, modulated by a slow sine), illumination flicker and
sensor noise. Everything random comes from ``numpy.random.SeedSequence`` streams keyed by
(seed, subject, video).

Output: ``DIR/<subject>/<video>/img00001.jpg ...``; ``DIR/manifest.csv`` in the generic
manifest format with one row per expression (label ``micro`` or ``macro``, ``clip`` the
video, ``aus`` its class's AUs; ``mertool index --dataset manifest --sheet
DIR/manifest.csv`` reads it); ``DIR/synth_long.json`` (parameters, per video its frames,
fps, expressions with class and amplitude, and blinks).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .config import StageConfig
from .errors import MertoolError
from .parallel import parallel_map
from .synth import (
    MOTION_CLASSES, Subject, SynthConfig, blink_field, claim_folder, make_subject, motion_field, profile,
    publish_set, render_frame,
)

MANIFEST_COLUMNS = ["sample_id", "subject", "clip", "frames", "onset", "apex", "offset", "label", "aus", "dataset"]
SUMMARY = "synth_long.json"


@dataclasses.dataclass
class LongSynthConfig(StageConfig):
    """Parameters of a set of synthetic long videos (recorded in ``synth_long.json``).

    Attributes
    ----------
    subjects : int
        Subjects (each a :func:`mertool.synth.make_subject` face).
    videos : int
        Videos per subject.
    seconds : float
        Length of a video.
    fps : float
        Frame rate (200: SAMM; 30: CAS(ME)^2, CAS(ME)^3).
    micro, macro : int
        Micro- and macro-expressions per video.
    micro_seconds, macro_seconds : (float, float)
        Ranges of their lengths, onset to offset.
    micro_amplitude, macro_amplitude : (float, float)
        Ranges of their apex displacement (pixels).
    blinks : float
        Mean blinks per minute (a Poisson count per video).
    blink_seconds : (float, float)
        Range of a blink's length.
    gap : float
        Least time (seconds) between two events and between an event and either end.
    drift, jitter, idle : float
        Head drift bound, jitter bound and idle facial motion amplitude (pixels).
    classes : tuple of str
        AU classes the expressions draw from (:data:`mertool.synth.MOTION_CLASSES`).
    size : int
        Frame side (pixels).
    seed : int
        Master seed; the same seed gives identical files.
    noise : (float, float)
        Range of the per-subject sensor-noise standard deviation (grey levels).
    image_format : str
        ``jpg`` (quality 95) or ``png``.
    """

    subjects: int = 4
    videos: int = 2
    seconds: float = 8.0
    fps: float = 200.0
    micro: int = 3
    macro: int = 1
    micro_seconds: tuple = (0.2, 0.45)
    macro_seconds: tuple = (0.8, 2.0)
    micro_amplitude: tuple = (1.0, 2.5)
    macro_amplitude: tuple = (3.0, 6.0)
    blinks: float = 15.0
    blink_seconds: tuple = (0.15, 0.3)
    gap: float = 0.4
    drift: float = 3.0
    jitter: float = 0.15
    idle: float = 0.3
    classes: tuple = tuple(MOTION_CLASSES)
    size: int = 256
    seed: int = 0
    noise: tuple = (0.5, 2.0)
    image_format: str = "jpg"

    def validate(self) -> None:
        for name in ("micro_seconds", "macro_seconds", "micro_amplitude", "macro_amplitude", "blink_seconds", "noise"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise MertoolError(f"{name} {getattr(self, name)}: need LO,HI with 0 <= LO <= HI")
            setattr(self, name, value)
        self.classes = tuple(str(c).strip() for c in self.classes)
        unknown = [c for c in self.classes if c not in MOTION_CLASSES]
        if unknown or not self.classes:
            raise MertoolError(f"classes {', '.join(unknown) or '(none)'}: choose from {', '.join(MOTION_CLASSES)}")
        if self.subjects < 1 or self.videos < 1 or self.micro < 0 or self.macro < 0:
            raise MertoolError("subjects and videos must be >= 1, micro and macro >= 0")
        if not 10 <= self.fps <= 1000 or not 0.5 <= self.seconds <= 600:
            raise MertoolError(f"fps {self.fps} (10..1000) or seconds {self.seconds} (0.5..600) out of range")
        if self.micro_seconds[0] * self.fps < 3:
            raise MertoolError(f"micro_seconds {self.micro_seconds}: a micro-expression needs 3 frames at {self.fps} fps")
        if self.image_format not in ("jpg", "png"):
            raise MertoolError(f"image_format {self.image_format!r}: choose jpg or png")
        self.synth_config()  # size and noise as synth checks them

    def synth_config(self) -> SynthConfig:
        """The :class:`~mertool.synth.SynthConfig` subjects are made with (size, seed, noise)."""
        cfg = SynthConfig(size=self.size, seed=self.seed, noise=self.noise)
        cfg.validate()
        return cfg


@dataclasses.dataclass(frozen=True)
class Event:
    """One event of a video: ``kind`` micro | macro | blink, frames onset..offset (inclusive)."""

    kind: str
    onset: int
    apex: int
    offset: int
    label: str = ""
    amplitude: float = 0.0


def _rng(cfg: LongSynthConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 7, *map(int, key)]))


def _lengths(rng: np.random.Generator, cfg: LongSynthConfig) -> list[tuple[str, int]]:
    """(kind, length in frames) of every event of a video, shuffled."""
    minutes = cfg.seconds / 60.0
    spans = {"micro": cfg.micro_seconds, "macro": cfg.macro_seconds, "blink": cfg.blink_seconds}
    counts = {"micro": cfg.micro, "macro": cfg.macro, "blink": int(rng.poisson(cfg.blinks * minutes))}
    kinds = [k for k in ("micro", "macro", "blink") for _ in range(counts[k])]
    out = [(k, max(3, int(round(rng.uniform(*spans[k]) * cfg.fps)))) for k in kinds]
    return [out[i] for i in rng.permutation(len(out))]


def plan_events(cfg: LongSynthConfig, subject: int, video: int) -> tuple[int, list[Event]]:
    """A video's length in frames and its events, in time order (frames are 1-based).

    The slack left by the events and the least gaps is split at random between the
    ``n + 1`` gaps, so events never overlap and keep ``gap`` seconds apart. Blinks (a
    Poisson count) that leave no room are dropped.

    Raises
    ------
    MertoolError
        The events and gaps do not fit in ``seconds``.
    """
    rng = _rng(cfg, subject, video)
    total = int(round(cfg.seconds * cfg.fps))
    lengths = _lengths(rng, cfg)
    gap = int(round(cfg.gap * cfg.fps))

    def slack_of(events: list[tuple[str, int]]) -> int:
        return total - sum(n for _, n in events) - gap * (len(events) + 1)

    while slack_of(lengths) < 0 and any(kind == "blink" for kind, _ in lengths):  # too many blinks drawn
        lengths.remove(next(e for e in reversed(lengths) if e[0] == "blink"))
    slack = slack_of(lengths)
    if slack < 0:
        raise MertoolError(
            f"{len(lengths)} events of {sum(n for _, n in lengths)} frames and gaps of {gap} do not fit in "
            f"{total} frames: raise seconds or lower micro/macro/blinks"
        )
    shares = np.floor(rng.dirichlet(np.ones(len(lengths) + 1)) * slack).astype(int)
    events, start = [], 1
    for (kind, length), share in zip(lengths, shares):
        onset = start + gap + int(share)
        offset = onset + length - 1
        apex = int(round(onset + rng.uniform(0.35, 0.6) * (length - 1)))
        label = str(rng.choice(cfg.classes)) if kind != "blink" else ""
        amplitude = float(rng.uniform(*(cfg.micro_amplitude if kind == "micro" else cfg.macro_amplitude)))
        events.append(Event(kind, onset, apex, offset, label, amplitude if kind != "blink" else 0.0))
        start = offset + 1
    return total, events


def _slow_sines(rng: np.random.Generator, t: np.ndarray, periods: tuple[float, float], n: int) -> np.ndarray:
    """Sum of ``n`` sines of random periods and phases, scaled to a peak of 1."""
    out = np.zeros_like(t)
    for _ in range(n):
        out += np.sin(2 * np.pi * t / rng.uniform(*periods) + rng.uniform(0, 2 * np.pi))
    return out / max(np.abs(out).max(), 1e-9)


def head_motion(cfg: LongSynthConfig, subject: int, video: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the head shift (N x 2: drift + jitter, pixels), the idle-motion strength
    (N, in -1..1) and the flicker gain (N)."""
    rng = _rng(cfg, subject, video, 1)
    t = np.arange(frames) / cfg.fps
    drift = np.stack([_slow_sines(rng, t, (4.0, 12.0), 2), _slow_sines(rng, t, (4.0, 12.0), 2)], axis=1)
    steps = rng.normal(0.0, cfg.jitter / 4 + 1e-12, (frames, 2))
    jitter = np.clip(np.cumsum(steps, axis=0), -cfg.jitter, cfg.jitter)
    idle = _slow_sines(rng, t, (2.0, 6.0), 2)
    flicker = 1.0 + rng.normal(0.0, 0.003, frames)
    return drift * cfg.drift + jitter, idle, flicker


def render_video(subject: Subject, index: tuple[int, int], cfg: LongSynthConfig, folder: Path) -> dict[str, Any]:
    """Write one video's frames into ``folder`` (one at a time: a long video is never held
    whole) and return its ground truth."""
    total, events = plan_events(cfg, *index)
    shift, idle, flicker = head_motion(cfg, *index, total)
    h, w = subject.image.shape[:2]
    rng = _rng(cfg, *index, 2)
    idle_field = motion_field(subject.landmarks, str(rng.choice(cfg.classes)), (h, w)) * np.float32(cfg.idle)
    lids = blink_field(subject.landmarks, (h, w))
    numbers = np.arange(1, total + 1)
    moving = [
        (lids if e.kind == "blink" else motion_field(subject.landmarks, e.label, (h, w)) * np.float32(e.amplitude),
         profile(numbers, e.onset, e.apex, e.offset).astype(np.float32))
        for e in events
    ]
    grid = tuple(np.mgrid[0:h, 0:w].astype(np.float32)[::-1])
    noise_rng = np.random.default_rng(rng.integers(0, 2**32))
    ext = cfg.image_format
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for i in range(total):
        disp = idle_field * np.float32(idle[i])
        for field, strength in moving:
            if strength[i] > 0:
                disp = disp + field * strength[i]
        frame = render_frame(subject, disp, shift[i], flicker[i], noise_rng, grid)
        if not cv2.imwrite(str(folder / f"img{i + 1:05d}.{ext}"), frame[:, :, ::-1], params):
            raise MertoolError(f"{folder}: cannot write frame images")
    return {
        "frames": total,
        "fps": cfg.fps,
        "source": subject.source,
        "expressions": [dataclasses.asdict(e) for e in events if e.kind != "blink"],
        "blinks": [[e.onset, e.offset] for e in events if e.kind == "blink"],
    }


def video_name(subject: int, video: int) -> tuple[str, str]:
    """(subject, video) names of 0-based indices: ``("sub01", "sub01_v1")``."""
    return f"sub{subject + 1:02d}", f"sub{subject + 1:02d}_v{video + 1}"


def _write_video(item: tuple[Subject, tuple[int, int], LongSynthConfig, str]) -> tuple[str, dict]:
    subject, index, cfg, out_dir = item
    sub, name = video_name(*index)
    folder = Path(out_dir) / sub / name
    truth_path = folder / "truth.json"
    if truth_path.is_file():  # finished by an earlier, interrupted run
        return name, json.loads(truth_path.read_text())
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    truth = render_video(subject, index, cfg, tmp)
    (tmp / "truth.json").write_text(json.dumps(truth))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)  # a video folder appears complete or not at all
    return name, truth


def manifest_rows(videos: dict[str, dict]) -> list[dict[str, Any]]:
    """One generic-manifest row per expression (label ``micro`` / ``macro``)."""
    rows = []
    for name in sorted(videos):
        sub = name.split("_")[0]
        for k, e in enumerate(videos[name]["expressions"], start=1):
            rows.append({
                "sample_id": f"{name}_e{k:02d}", "subject": sub, "clip": name, "frames": f"{sub}/{name}",
                "onset": e["onset"], "apex": e["apex"], "offset": e["offset"], "label": e["kind"],
                "aus": MOTION_CLASSES[e["label"]].aus, "dataset": "synth-long",
            })
    return rows


def generate_long(
    out_dir: str | Path,
    cfg: LongSynthConfig | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a set of synthetic long videos (frame folders, ``manifest.csv``, ``synth_long.json``).

    Resumes an interrupted run with the same parameters (finished videos are kept); a
    finished set with the same parameters is reused as is.

    Parameters
    ----------
    out_dir : path
        Folder to write (created).
    cfg : LongSynthConfig, optional
        Parameters (default: 4 subjects x 2 videos of 8 s at 200 fps).
    jobs : int
        Worker processes (one video each).
    overwrite : bool
        Replace a set made with other parameters.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The manifest CSV (one row per expression).

    Raises
    ------
    MertoolError
        Bad parameters, events that do not fit, or a folder that holds something else.
    """
    cfg = cfg or LongSynthConfig()
    cfg.validate()
    out = Path(out_dir)
    params = {**cfg.to_dict(), "generator": "mertool.synth_long/1"}
    if claim_folder(out, params, overwrite, SUMMARY):
        return out / "manifest.csv"
    for s in range(cfg.subjects):  # fail early: every video's events must fit
        for v in range(cfg.videos):
            plan_events(cfg, s, v)
    synth_cfg = cfg.synth_config()
    subjects = [make_subject(s, synth_cfg) for s in range(cfg.subjects)]
    items = [(subjects[s], (s, v), cfg, str(out)) for s in range(cfg.subjects) for v in range(cfg.videos)]
    videos = dict(parallel_map(_write_video, items, jobs=jobs, desc="synth-long", progress=progress, unit="video"))
    return publish_set(out, params, MANIFEST_COLUMNS, manifest_rows(videos), {"videos": videos}, SUMMARY)


def read_long_truth(out_dir: str | Path) -> dict:
    """The ``synth_long.json`` of a finished set (parameters and per-video ground truth)."""
    path = Path(out_dir) / SUMMARY
    if not path.is_file():
        raise MertoolError(f"{path}: not found (generate the set with mertool.synth_long.generate_long)")
    return json.loads(path.read_text())
