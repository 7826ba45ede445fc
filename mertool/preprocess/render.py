"""Preview pictures: pure drawing functions (arrays in, RGB uint8 arrays out).

Stages call these to write their ``--preview`` PNGs; nothing here reads or writes files.
"""

from __future__ import annotations

import cv2
import numpy as np

from .dynimg import normalize_image


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


def preview_panel(onset: np.ndarray, apex: np.ndarray, flow3: np.ndarray, tile: int = 160) -> np.ndarray:
    """Onset | apex | flow wheel | strain, side by side (RGB uint8)."""

    def fit(img: np.ndarray) -> np.ndarray:
        img = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        return cv2.resize(img, (tile, tile), interpolation=cv2.INTER_NEAREST if img.shape[0] < tile else cv2.INTER_AREA)

    return np.concatenate(
        [fit(onset), fit(apex), fit(flow_to_rgb(flow3[0], flow3[1])), fit(strain_to_rgb(flow3[2]))], axis=1
    )


def display_tile(img_chw: np.ndarray, side: int) -> np.ndarray:
    """C x S x S float -> side x side x 3 uint8 (min-max per image, for the eye only)."""
    img = normalize_image(img_chw.transpose(1, 2, 0), "minmax")
    img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    img = cv2.resize(img.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def labelled(img: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((22, img.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
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


def contact_sheet(tiles: list[np.ndarray], cols: int = 2) -> np.ndarray:
    """Equal-sized tiles in a grid, ``cols`` per row (the last row padded with black)."""
    if not tiles:
        raise ValueError("no tiles")
    tiles = tiles + [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    return np.concatenate([np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)], axis=0)
