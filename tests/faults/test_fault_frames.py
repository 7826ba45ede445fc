"""Faults: damaged frames. A truncated or corrupt image (a JPEG without its end marker,
a decoder warning, a PNG CRC error) fails its clip with a line naming the file, and is
never used as a frame; so does a video frame that fails to decode. Good files read
exactly as OpenCV reads them."""

from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from conftest import astronaut_face
from fault_fixtures import ALIGN, frame_files, make_clips
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.samples import Sample, decoder_messages, load_frames, read_image
from mertool.stages.stagefile import open_stage


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(astronaut_face(128), cv2.COLOR_RGB2BGR))[1].tobytes()


def _png() -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(astronaut_face(64), cv2.COLOR_RGB2BGR))[1].tobytes()


def _chunk(kind: bytes, body: bytes, crc_delta: int = 0) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", (zlib.crc32(kind + body) + crc_delta) & 0xFFFFFFFF)


def _damaged() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, what the error says)."""
    jpg, png = _jpeg(), _png()
    stuffed = bytearray(jpg)
    stuffed[len(jpg) // 2: len(jpg) // 2 + 2] = b"\xff\xd3"  # a restart marker in the middle of the scan
    idat = png.index(b"IDAT")
    idat_end = idat + 4 + struct.unpack(">I", png[idat - 4: idat])[0]
    bad_idat_crc = png[:idat_end] + bytes([png[idat_end] ^ 0xFF]) + png[idat_end + 1:]
    return {
        "cut.jpg": (jpg[: len(jpg) * 2 // 3], "truncated JPEG (no end-of-image marker"),
        "corrupt.jpg": (bytes(stuffed), "corrupt image (decoder: Corrupt JPEG data"),
        "text_crc.png": (png[:33] + _chunk(b"tEXt", b"Comment\0hello", crc_delta=1) + png[33:], "decoder: libpng warning: tEXt: CRC error"),
        "idat_crc.png": (bad_idat_crc, "decoder: libpng error: IDAT: CRC error"),
        "no_iend.png": (png[:-12], "truncated PNG (no IEND chunk"),
        "garbage.jpg": (os.urandom(3000), "unreadable or corrupt image"),
        "empty.png": (b"", "image file is empty (0 bytes)"),
    }


@pytest.mark.parametrize("name", sorted(_damaged()))
def test_a_damaged_image_is_refused_naming_it(tmp_path, name):
    data, message = _damaged()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MertoolError) as exc:
        read_image(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value), str(exc.value)


@pytest.mark.parametrize("suffix, image", [
    (".jpg", astronaut_face(96)), (".png", astronaut_face(64)), (".png", astronaut_face(64)[:, :, 0]),
    (".png", (astronaut_face(64).astype(np.uint16) * 257)), (".bmp", astronaut_face(40)),
])
def test_good_images_read_as_opencv_reads_them(tmp_path, suffix, image):
    path = tmp_path / f"good{suffix}"
    cv2.imwrite(str(path), image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    got = read_image(path)
    if reference.dtype == np.uint16:
        reference = np.clip(reference.astype(np.float64) * 255.0 / 65535.0, 0, 255).astype(np.uint8)
    reference = np.repeat(reference[:, :, None], 3, axis=2) if reference.ndim == 2 else reference[:, :, ::-1]
    assert got.dtype == np.uint8 and np.array_equal(got, reference)


def test_a_clip_with_a_truncated_jpeg_fails_and_the_others_finish(tmp_path, capsys):
    samples = make_clips(tmp_path, n=3, pattern="img{:03d}.jpg")
    victim = frame_files(tmp_path, "c1")[2]
    victim.write_bytes(victim.read_bytes()[:-400])  # as a copy cut short leaves it
    out = tmp_path / "aligned.h5"
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    sf = open_stage(out)
    assert sf.sample_ids == ["c0", "c2"] and list(sf.failed) == ["c1"]
    assert f"{victim}: truncated JPEG" in sf.failed["c1"]
    assert f"warning: sample c1: {victim}: truncated JPEG" in capsys.readouterr().err


def test_decoder_messages_are_collected_and_benign_ones_let_through():
    with decoder_messages() as messages:
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        os.write(2, b"Invalid SOS parameters for sequential JPEG\n")
        os.write(2, b"libpng warning: iCCP: CRC error\n")
    assert messages == ["libpng warning: iCCP: CRC error"]


def _video(path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_a_video_frame_that_fails_to_decode_fails_the_clip(tmp_path):
    face = astronaut_face(96)
    frames = [np.roll(face, k, axis=1) for k in range(12)]
    good, bad = tmp_path / "good.avi", tmp_path / "bad.avi"
    _video(good, frames)
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 300] = bytes((b * 7 + 13) & 0xFF for b in data[middle: middle + 300])
    bad.write_bytes(bytes(data))
    ok = load_frames(Sample("v", "s", 1, 6, 12, "l", video=str(good)), list(range(1, 13)))
    assert len(ok) == 12 and ok[0].shape == (96, 96, 3)
    with pytest.raises(MertoolError, match=rf"{bad}: a frame fails to decode near frame \d+ \(decoder: .*sample v is not used"):
        load_frames(Sample("v", "s", 1, 6, 12, "l", video=str(bad)), list(range(1, 13)))


def test_two_faces_of_equal_size_a_fixed_choice_named_and_counted(tmp_path, capsys):
    from conftest import shifted, write_clip, write_manifest

    face = astronaut_face(140)
    frames = []
    for k in range(5):
        moved = shifted(face, 0.4 * k, 0.0)
        frames.append(np.concatenate([moved, moved[:, ::-1]], axis=1))  # the face and its mirror image, same size
    write_clip(tmp_path / "two", frames)
    manifest = write_manifest(tmp_path / "m.csv", [{"sample_id": "two", "subject": "s1", "frames": "two", "onset": 1,
                                                    "apex": 3, "offset": 5, "label": "x"}])
    samples = tmp_path / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(samples)]) == 0
    runs = []
    for name in ("a", "b"):
        capsys.readouterr()
        assert cli(["align", str(samples), "-o", str(tmp_path / f"{name}.h5"), *ALIGN]) == 0
        assert "warning: sample two: 2 faces found, using the largest" in capsys.readouterr().err
        runs.append(open_stage(tmp_path / f"{name}.h5"))
    assert runs[0].meta_of("two")["n_faces"] == 2
    assert np.array_equal(runs[0].sample("two")["landmarks"], runs[1].sample("two")["landmarks"])
