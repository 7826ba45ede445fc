"""Preview pictures: pure drawing functions (arrays in, RGB uint8 arrays out).

Stages call these to write their ``--preview`` PNGs; nothing here reads or writes files.
Flow and strain maps are drawn on one scale per set of pictures (:func:`display_scale`),
without their outer :func:`edge_band` (TV-L1 is unreliable there: image content enters
and leaves the frame, and the strain's derivatives amplify it), and with a key that
states the scale (:func:`flow_preview`, :func:`class_flow_sheet`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .dynimg import normalize_image

EDGE_FRACTION = 1 / 16  # flow/strain border band not drawn, as a fraction of the side
CAPTION = 22  # height of a caption strip (:func:`labelled`), pixels
GREY = (160, 160, 160)  # the undrawn border band


def flow_to_rgb(u: np.ndarray, v: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-wheel picture of a flow: hue = direction, brightness = magnitude.

    Hue follows the angle of (u, v) in image coordinates (0 deg = rightwards = red,
    90 deg = downwards); brightness is the magnitude divided by ``max_magnitude``
    (default: the field's 99th percentile, so a few outliers at the border do not
    darken the picture). Returns H x W x 3 uint8 RGB.
    """
    u = np.nan_to_num(np.asarray(u, np.float32))
    v = np.nan_to_num(np.asarray(v, np.float32))
    mag, ang = cv2.cartToPolar(u, v, angleInDegrees=True)
    top = float(max_magnitude) if max_magnitude else float(np.percentile(mag, 99))
    hsv = np.zeros((*u.shape, 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8) % 180  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(mag / top * 255, 0, 255).astype(np.uint8) if top > 0 else 0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def strain_to_rgb(strain: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Strain map as an RGB uint8 picture (inferno colormap, 0..``vmax``, default the
    99th percentile)."""
    s = np.nan_to_num(np.asarray(strain, np.float32))
    top = float(vmax) if vmax else float(np.percentile(s, 99))
    gray = np.clip(s / top * 255, 0, 255).astype(np.uint8) if top > 0 else np.zeros(s.shape, np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def edge_band(side: int) -> int:
    """Width in pixels of the border band of a ``side`` x ``side`` flow map that is not drawn
    (:data:`EDGE_FRACTION` of the side, at least one pixel)."""
    return max(1, round(side * EDGE_FRACTION))


def inner(a: np.ndarray, band: int) -> np.ndarray:
    """The last two axes of ``a`` without their outer ``band`` pixels."""
    return a[..., band : a.shape[-2] - band, band : a.shape[-1] - band] if band else a


def display_scale(maps: Sequence[np.ndarray], band: int, q: float = 99.0) -> tuple[float, float]:
    """One flow and one strain scale for a set of pictures.

    Parameters
    ----------
    maps : sequence of np.ndarray
        3 x S x S (u, v, strain) maps, one per picture.
    band : int
        Border band left out (:func:`edge_band`).
    q : float
        Percentile taken per map, so a few outliers do not darken its picture.

    Returns
    -------
    (float, float)
        The largest per-map ``q``-th percentile of the flow magnitude and of the strain,
        inside the band; 1.0 where that is 0 (all-zero maps).
    """
    if not len(maps):
        raise ValueError("no maps to scale")
    flow = max(float(np.percentile(inner(np.hypot(m[0], m[1]), band), q)) for m in maps)
    strain = max(float(np.percentile(inner(np.asarray(m[2]), band), q)) for m in maps)
    return flow or 1.0, strain or 1.0


def grey_edge(image: np.ndarray, band: int) -> np.ndarray:
    """A copy of an H x W x 3 picture with its outer ``band`` pixels painted :data:`GREY`."""
    out = np.array(image, dtype=np.uint8)
    if band:
        keep = inner(out.transpose(2, 0, 1), band).transpose(1, 2, 0).copy()
        out[:] = GREY
        out[band : out.shape[0] - band, band : out.shape[1] - band] = keep
    return out


def spread_samples(subjects: Sequence[str], labels: Sequence[str], count: int | None = None) -> list[int]:
    """Indices of samples to preview: every class, then every subject, then as even as can be.

    Greedy: each pick is the sample that shows a class not yet shown, else a subject not
    yet shown, else the least-shown class and subject, the earliest in file order on ties.
    With ``count`` None it stops once every class and subject is shown.

    Returns
    -------
    list of int
        Sorted indices into ``subjects`` / ``labels``.
    """
    if len(subjects) != len(labels):
        raise ValueError(f"{len(subjects)} subjects but {len(labels)} labels")
    by_class: dict[str, int] = {}
    by_subject: dict[str, int] = {}
    left = set(range(len(subjects)))
    chosen: list[int] = []
    while left and (count is None or len(chosen) < count):
        def rank(i: int) -> tuple:
            c, s = by_class.get(labels[i], 0), by_subject.get(subjects[i], 0)
            return (c == 0, s == 0, -c, -s, -i)

        best = max(left, key=rank)
        if count is None and rank(best)[:2] == (False, False):
            break
        chosen.append(best)
        left.discard(best)
        by_class[labels[best]] = by_class.get(labels[best], 0) + 1
        by_subject[subjects[best]] = by_subject.get(subjects[best], 0) + 1
    return sorted(chosen)


def wheel_key(side: int) -> np.ndarray:
    """The colour-wheel key: a disc whose pixel at (x, y) from the centre is drawn as the
    flow (x, y) would be, full brightness at the rim; white outside the disc."""
    r = (side - 1) / 2
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) - r
    disc = flow_to_rgb(x, y, max_magnitude=r)
    disc[np.hypot(x, y) > r] = 255
    return disc


def _fig_rgb(fig) -> np.ndarray:
    """Render a matplotlib figure to an RGB uint8 array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _keys(fig, box: tuple[float, float, float, float], flow_max: float, strain_max: float, unit: str) -> None:
    """Colour-wheel key and strain colour bar in the figure area ``box`` (left, bottom, w, h)."""
    from matplotlib.colors import Normalize
    from matplotlib.cm import ScalarMappable

    left, bottom, w, h = box
    wheel = fig.add_axes((left, bottom + 0.45 * h, w, 0.5 * h))
    wheel.imshow(wheel_key(101), extent=(-flow_max, flow_max, flow_max, -flow_max))
    wheel.set_title(f"flow key\n(rim = {flow_max:.3g} {unit})", fontsize=8)
    wheel.tick_params(labelsize=6)
    wheel.set_xticks([-flow_max, 0, flow_max], ["left", "0", "right"])
    wheel.set_yticks([-flow_max, 0, flow_max], ["up", "0", "down"])
    bar = fig.add_axes((left + 0.15 * w, bottom + 0.08 * h, 0.7 * w, 0.05 * h))
    mappable = ScalarMappable(Normalize(0, strain_max), "inferno")
    ticks = [0, strain_max / 2, strain_max]
    fig.colorbar(mappable, cax=bar, orientation="horizontal", ticks=ticks)
    bar.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=6)
    bar.set_title("strain", fontsize=8)


def flow_preview(
    onset: np.ndarray, apex: np.ndarray, flow3: np.ndarray, *, title: str, frames: tuple[str, str],
    flow_max: float, strain_max: float, unit: str = "px", tile: float = 1.9,
) -> np.ndarray:
    """One sample's picture: onset | apex | flow colour wheel | strain, titled, with a key.

    Parameters
    ----------
    onset, apex : np.ndarray
        H x W (x 3) uint8 frames.
    flow3 : np.ndarray
        3 x S x S u, v, strain.
    title : str
        Figure title (sample id, label, subject).
    frames : (str, str)
        Titles of the onset and apex panels (e.g. their frame numbers).
    flow_max, strain_max : float
        Common scale (:func:`display_scale`): the brightest flow and strain colour.
    unit : str
        Unit of the flow (``px``, or the normalised scale's name).
    tile : float
        Panel side in inches (100 dpi).

    Returns
    -------
    np.ndarray
        RGB uint8 picture of (tile + 0.75) * 100 x (4 tile + 1.6) * 100 pixels.
    """
    from matplotlib.figure import Figure

    band = edge_band(flow3.shape[-1])
    width, height = 4 * tile + 1.6, tile + 0.75
    fig = Figure(figsize=(width, height), dpi=100)
    panels = [
        (onset, frames[0]),
        (apex, frames[1]),
        (grey_edge(flow_to_rgb(flow3[0], flow3[1], flow_max), band), "flow (hue = direction)"),
        (grey_edge(strain_to_rgb(flow3[2], strain_max), band), "optical strain"),
    ]
    for k, (img, name) in enumerate(panels):
        ax = fig.add_axes((0.1 / width + k * tile / width, 0.2 / height, 0.96 * tile / width, 0.96 * tile / height))
        ax.imshow(img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10, x=0.1 / width, ha="left", y=1 - 0.06 / height, va="top")
    _keys(fig, ((4 * tile + 0.35) / width, 0.25 / height, 1.0 / width, tile / height), flow_max, strain_max, unit)
    note = f"flow and strain on one scale in every picture of this set; grey: outer {band} px not drawn (TV-L1 border effect)"
    fig.text(0.1 / width, 0.05 / height, note, fontsize=7)
    return _fig_rgb(fig)


def class_flow_sheet(
    means: dict[str, np.ndarray], counts: dict[str, int], *, flow_max: float, strain_max: float,
    unit: str = "px", tile: float = 1.6,
) -> np.ndarray:
    """Mean flow (colour wheel) and strain per class: one column per class, one row per map,
    a key on the right; every class on the same scale.

    Parameters
    ----------
    means : dict
        Class -> 3 x S x S mean (u, v, strain) map.
    counts : dict
        Class -> number of samples averaged.
    flow_max, strain_max : float
        The scale (:func:`display_scale` of the means).
    unit : str
        Unit of the flow.
    tile : float
        Panel side in inches (100 dpi).

    Returns
    -------
    np.ndarray
        RGB uint8 picture of (2 tile + 0.9) * 100 x (n tile + 2.4) * 100 pixels.
    """
    from matplotlib.figure import Figure

    n = len(means)
    width, height = n * tile + 2.4, 2 * tile + 0.9
    fig = Figure(figsize=(width, height), dpi=100)
    for col, (name, m) in enumerate(means.items()):
        band = edge_band(m.shape[-1])
        maps = (flow_to_rgb(m[0], m[1], flow_max), strain_to_rgb(m[2], strain_max))
        for row, img in enumerate(maps):
            box = ((0.5 + col * tile) / width, (0.3 + (1 - row) * tile) / height, 0.96 * tile / width, 0.96 * tile / height)
            ax = fig.add_axes(box)
            ax.imshow(grey_edge(img, band), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{name} (n={counts[name]})", fontsize=9)
            if col == 0:
                ax.set_ylabel(("mean flow", "mean strain")[row], fontsize=9)
    _keys(fig, ((0.85 + n * tile) / width, 0.45 / height, 1.2 / width, 1.8 * tile / height), flow_max, strain_max, unit)
    band = edge_band(next(iter(means.values())).shape[-1])
    fig.suptitle("mean onset \u2192 apex flow and strain per class", fontsize=10, y=1 - 0.06 / height, va="top")
    note = f"one scale for all classes; grey: outer {band} px not drawn (TV-L1 border effect)"
    fig.text(0.5 / width, 0.08 / height, note, fontsize=7)
    return _fig_rgb(fig)


def display_tile(img_chw: np.ndarray, side: int) -> np.ndarray:
    """C x S x S float -> side x side x 3 uint8 (min-max per image, for the eye only)."""
    img = normalize_image(img_chw.transpose(1, 2, 0), "minmax")
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    img = cv2.resize(img.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def fit_text(text: str, width: int, scale: float = 0.45, smallest: float = 0.3) -> tuple[str, float]:
    """``(text, font scale)`` that fit ``width`` pixels in OpenCV's simplex font: the scale
    shrinks down to ``smallest``, then the text is cut short with ``..``."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    while scale > smallest and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        scale = max(smallest, scale - 0.05)
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > width:
        text = text[: -3 if text.endswith("..") else -1].rstrip() + ".."
    return text, scale


def labelled(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` under a white :data:`CAPTION`-pixel strip holding ``text`` (shrunk to fit)."""
    strip = np.full((CAPTION, img.shape[1], 3), 255, np.uint8)
    text, scale = fit_text(text, img.shape[1] - 6)
    cv2.putText(strip, text, (3, 16), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def frame_tile(frame: np.ndarray, side: int) -> np.ndarray:
    frame = np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame
    return cv2.resize(np.ascontiguousarray(frame, dtype=np.uint8), (side, side), interpolation=cv2.INTER_AREA)


def landmarks_tile(frames: list[np.ndarray], landmarks: np.ndarray, marks: np.ndarray, text: str) -> np.ndarray:
    """Frames side by side (RGB uint8) with landmarks as green dots, ``marks`` (e.g. the
    template eyes) as red crosses and ``text`` in white at the top left."""
    drawn = []
    points = np.asarray(landmarks, np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]  # NaN: no face found (crop "none")
    for frame in frames:
        img = np.array(frame, dtype=np.uint8)  # a copy: drawing is in place
        for x, y in points:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
        for x, y in marks:
            cv2.drawMarker(img, (int(round(x)), int(round(y))), (255, 0, 0), cv2.MARKER_CROSS, 8, 1)
        drawn.append(img)
    tile = np.ascontiguousarray(np.concatenate(drawn, axis=1))
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return tile


def shade_invalid(image: np.ndarray, valid: np.ndarray, colour: tuple[int, int, int] = (255, 0, 255)) -> np.ndarray:
    """A copy of an RGB uint8 image with its invalid pixels (``valid`` == 0, e.g. border
    replicated by an alignment warp) blended half-way towards ``colour`` (magenta)."""
    out = np.array(image, dtype=np.uint8)
    out = out if out.ndim == 3 else cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    bad = np.asarray(valid) == 0
    out[bad] = ((out[bad].astype(np.uint16) + np.array(colour, np.uint16)) // 2).astype(np.uint8)
    return out


def contact_sheet(
    tiles: list[np.ndarray], cols: int = 2, columns: Sequence[str] = (), legend: Sequence[str] = ()
) -> np.ndarray:
    """Equal-sized tiles in a grid, ``cols`` per row (the last row padded with white).

    ``columns``: names written over equal parts of each tile (e.g. ``("onset", "apex")``
    over a tile of two frames), in a :data:`CAPTION` strip on top; ``legend``: lines of
    text in a strip at the bottom.
    """
    if not tiles:
        raise ValueError("no tiles")
    tiles = tiles + [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)
    sheet = np.concatenate([np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)], axis=0)
    parts = [sheet]
    if columns:
        part = tiles[0].shape[1] // len(columns)
        head = np.hstack([labelled(np.zeros((0, part, 3), np.uint8), name) for name in columns] * cols)
        parts.insert(0, np.pad(head, ((0, 0), (0, sheet.shape[1] - head.shape[1]), (0, 0)), constant_values=255))
    for line in legend:
        parts.append(labelled(np.zeros((0, sheet.shape[1], 3), np.uint8), line))
    return np.concatenate(parts, axis=0)
