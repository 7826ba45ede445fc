"""`mertool spot` end to end on synthetic long videos, its bad inputs, and the long-video generator."""

import csv
import json
import shutil

import numpy as np
import pytest

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.stages.spot import SpotConfig, evaluate_spots, frame_chunks, run_spot, videos_of
from mertool.samples import Sample, read_samples, write_samples
from mertool.synth_long import LongSynthConfig, generate_long, plan_events, read_long_truth

# two 3 s videos at 30 fps, one micro- and one macro-expression each, no blinks: about a second to render
TINY = dict(subjects=1, videos=2, seconds=3.0, fps=30.0, micro=1, macro=1, blinks=0.0, size=128, macro_seconds=(0.8, 1.0))


@pytest.fixture(scope="module")
def long_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("long")
    manifest = generate_long(root / "data", LongSynthConfig(**TINY), progress=False)
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(root / "long.csv")]) == 0
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_spot_cli_writes_the_csvs_and_evaluates(long_set, tmp_path, capsys):
    long_csv, out = long_set / "long.csv", tmp_path / "spots.csv"
    args = ["spot", str(long_csv), "-o", str(out), "--fps", "30", "--evaluate", str(long_csv), "--preview", str(tmp_path / "pics")]
    assert cli(args) == 0
    printed = capsys.readouterr().out
    assert "micro F1" in printed and "in 2 of 2 videos" in printed
    rows = _rows(out)
    assert rows and list(rows[0]) == ["video", "subject", "onset", "apex", "offset", "type", "score", "seconds"]
    for r in rows:
        onset, apex, offset = int(r["onset"]), int(r["apex"]), int(r["offset"])
        assert 1 <= onset <= apex <= offset <= 90 and r["type"] in ("micro", "macro")
        assert float(r["seconds"]) == pytest.approx((offset - onset + 1) / 30, abs=1e-3)
        assert r["type"] == ("micro" if offset - onset + 1 <= 15 else "macro")
    clips = read_samples(tmp_path / "spots_samples.csv")  # the spotted clips, as the other verbs read them
    assert [(c.onset, c.apex, c.offset, c.label) for c in clips] == [(int(r["onset"]), int(r["apex"]), int(r["offset"]), r["type"]) for r in rows]
    assert all(c.frames and c.apex_source == "spotted:flow" for c in clips)
    scores = _rows(tmp_path / "spots_eval.csv")
    overall = {r["type"]: r for r in scores if r["scope"] == "overall"}
    truth = read_samples(long_csv)
    assert int(overall["all"]["tp"]) + int(overall["all"]["fn"]) == len(truth) == 4
    assert int(overall["all"]["tp"]) + int(overall["all"]["fp"]) == len(rows)
    assert len(list((tmp_path / "pics").glob("spot_*.png"))) == 2
    assert cli(args[:4] + ["--fps", "30"]) == 0 and "(up to date)" in capsys.readouterr().out


def test_truth_intervals_outside_the_video_or_overlapping_are_named_one_line_each(long_set, tmp_path, caplog):
    run_spot(long_set / "long.csv", tmp_path / "spots.csv", SpotConfig(fps=30), progress=False)
    truth = read_samples(long_set / "long.csv")
    bad = [Sample(**{**t.__dict__, "sample_id": t.sample_id + "_x", "onset": 80, "apex": 90, "offset": 95}) for t in truth[:1]]
    overlap = [Sample(**{**truth[0].__dict__, "sample_id": "dup", "onset": truth[0].onset + 1})]
    write_samples(truth + bad + overlap, tmp_path / "truth.csv")
    with caplog.at_level("WARNING", logger="mertool"):
        result = evaluate_spots(tmp_path / "spots.csv", tmp_path / "truth.csv")
    lines = [r.getMessage() for r in caplog.records]
    assert any("truth.csv:6" in m and "outside video" in m and "80..95" in m for m in lines), lines
    assert any("truth.csv:7" in m and "overlaps" in m for m in lines), lines
    assert result.left_out == 1
    assert result.row("all")["tp"] + result.row("all")["fn"] == len(truth) + 1  # the overlapping row is kept


def test_truth_without_a_type_is_typed_by_its_length_at_the_video_frame_rate(long_set, tmp_path):
    run_spot(long_set / "long.csv", tmp_path / "spots.csv", SpotConfig(fps=30), progress=False)
    truth = read_samples(long_set / "long.csv")
    typed = evaluate_spots(tmp_path / "spots.csv", long_set / "long.csv")
    for t in truth:
        assert t.label == ("micro" if t.offset - t.onset + 1 <= 15 else "macro")  # the generator's types agree with 0.5 s
        t.label = ""
    write_samples(truth, tmp_path / "untyped.csv")
    untyped = evaluate_spots(tmp_path / "spots.csv", tmp_path / "untyped.csv", tmp_path / "untyped_eval.csv")
    assert untyped.rows == typed.rows


def test_a_video_shorter_than_the_window_is_reported_and_the_others_finish(long_set, tmp_path, capsys):
    short = tmp_path / "short"
    short.mkdir()
    source = sorted((long_set / "data" / "sub01" / "sub01_v1").glob("*.jpg"))
    for f in source[:6]:
        shutil.copy(f, short / f.name)
    rows = read_samples(long_set / "long.csv")
    write_samples(rows + [Sample("s", "sub09", 1, -1, 6, "micro", "synth-long", "short", frames=str(short))], tmp_path / "in.csv")
    assert cli(["spot", str(tmp_path / "in.csv"), "-o", str(tmp_path / "spots.csv"), "--fps", "30"]) == 0
    err = capsys.readouterr().err
    assert "video short" in err and "shorter than the spotting window" in err and "--micro-window" in err
    write_samples([Sample("s", "sub09", 1, -1, 6, "micro", "synth-long", "short", frames=str(short))], tmp_path / "one.csv")
    assert cli(["spot", str(tmp_path / "one.csv"), "-o", str(tmp_path / "one_spots.csv"), "--fps", "30"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "no sample could be processed" in err[-1] and "shorter than the spotting window" in err[-1]


def test_an_unreadable_frame_mid_video_fails_that_video_only(long_set, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(long_set / "data" / "sub01" / "sub01_v2", broken)
    frame = sorted(broken.glob("*.jpg"))[40]
    frame.write_bytes(frame.read_bytes()[:300])  # cut short
    rows = read_samples(long_set / "long.csv")
    write_samples([r for r in rows if r.clip == "sub01_v1"] + [Sample("b", "sub01", 1, -1, 90, "micro", "synth-long", "broken", frames=str(broken))],
                  tmp_path / "in.csv")
    result = run_spot(tmp_path / "in.csv", tmp_path / "spots.csv", SpotConfig(fps=30), progress=False)
    assert result.stage.done == 1 and list(result.stage.failed) == ["broken"]
    assert frame.name in result.stage.failed["broken"]


def test_bad_options_are_one_line_errors(long_set, tmp_path, capsys):
    assert cli(["spot", str(long_set / "long.csv"), "-o", str(tmp_path / "spots.h5"), "--fps", "30"]) != 0
    assert "give the spotting CSV to write" in capsys.readouterr().err
    assert cli(["spot", str(long_set / "long.csv"), "-o", str(tmp_path / "s.csv")]) != 0  # synth-long: no known rate
    assert "pass --fps" in capsys.readouterr().err
    assert cli(["spot", str(long_set / "long.csv"), "-o", str(tmp_path / "s.csv"), "--fps", "30", "--regions", "ears"]) != 0
    assert "regions must be among" in capsys.readouterr().err


def test_videos_are_the_distinct_sources_and_frames_stream_in_strides(long_set):
    rows = read_samples(long_set / "long.csv")
    videos = videos_of(rows, 30.0)
    assert sorted(videos) == ["sub01_v1", "sub01_v2"] and len(rows) == 4
    video = videos["sub01_v1"].sample
    chunks = list(frame_chunks(video, stride=4, chunk=10))
    numbers = [n for part, _, _ in chunks for n in part]
    assert numbers == list(range(1, 91, 4)) and chunks[-1][2] == 90
    assert all(len(part) == len(frames) <= 10 and frames[0].shape == (128, 128, 3) for part, frames, _ in chunks)


def test_a_video_file_streams_like_its_frames(long_set, tmp_path):
    import cv2

    folder = long_set / "data" / "sub01" / "sub01_v1"
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (128, 128))
    for f in sorted(folder.glob("*.jpg"))[:25]:
        writer.write(cv2.imread(str(f)))
    writer.release()
    sample = Sample("v", "s", 1, -1, 25, "", video=str(path))
    chunks = list(frame_chunks(sample, stride=3, chunk=4))
    assert [n for part, _, _ in chunks for n in part] == list(range(1, 26, 3)) and chunks[-1][2] == 25


# --------------------------------------------------------------------------- the generator


def test_long_videos_hold_their_events_apart_and_match_the_manifest(long_set):
    truth = read_long_truth(long_set / "data")
    cfg = LongSynthConfig(**TINY)
    for (s, v), name in (((0, 0), "sub01_v1"), ((0, 1), "sub01_v2")):
        total, events = plan_events(cfg, s, v)
        assert total == 90 == truth["videos"][name]["frames"] == len(list((long_set / "data" / "sub01" / name).glob("*.jpg")))
        assert sorted(e.kind for e in events) == ["macro", "micro"]
        gap = round(cfg.gap * cfg.fps)
        edges = [(1 - gap, 1 - gap)] + [(e.onset, e.offset) for e in events] + [(total + gap, total + gap)]
        assert all(b[0] - a[1] - 1 >= gap - 1 for a, b in zip(edges, edges[1:]))
        for e in events:
            assert e.onset <= e.apex <= e.offset
            assert (e.offset - e.onset + 1) / cfg.fps <= (0.5 if e.kind == "micro" else 1.0) + 1e-9
    rows = _rows(long_set / "data" / "manifest.csv")
    assert [(r["clip"], int(r["onset"]), r["label"]) for r in rows] == [
        (name, e["onset"], e["kind"]) for name in sorted(truth["videos"]) for e in truth["videos"][name]["expressions"]
    ]


def test_without_distractors_the_face_moves_only_during_its_expression(tmp_path):
    from mertool.samples import read_image

    still = dict(subjects=1, videos=1, seconds=2.0, fps=30.0, micro=1, macro=0, blinks=0.0, size=128,
                 drift=0.0, jitter=0.0, idle=0.0, noise=(0.0, 0.0))
    generate_long(tmp_path, LongSynthConfig(**still), progress=False)
    micro = read_long_truth(tmp_path)["videos"]["sub01_v1"]["expressions"][0]
    frames = sorted((tmp_path / "sub01" / "sub01_v1").glob("*.jpg"))
    first = read_image(frames[0]).astype(float)
    change = np.array([np.percentile(np.abs(read_image(f).astype(float) - first).max(axis=2), 99.5) for f in frames])
    outside = np.r_[change[: micro["onset"] - 1], change[micro["offset"] :]]
    assert abs(int(np.argmax(change)) + 1 - micro["apex"]) <= 1
    assert change.max() > 2 * outside.max()  # flicker and JPEG only, outside


def test_blinks_that_leave_no_room_are_dropped():
    cfg = LongSynthConfig(**{**TINY, "seconds": 6.0, "blinks": 600.0})  # ~60 blinks drawn for a 6 s video
    total, events = plan_events(cfg, 0, 0)
    kinds = [e.kind for e in events]
    assert kinds.count("micro") == kinds.count("macro") == 1 and 0 < kinds.count("blink") < 20
    gap = round(cfg.gap * cfg.fps)
    assert all(b.onset - a.offset - 1 >= gap for a, b in zip(events, events[1:])) and events[-1].offset <= total


def test_events_that_do_not_fit_are_refused(tmp_path):
    with pytest.raises(MertoolError, match="do not fit"):
        plan_events(LongSynthConfig(seconds=1.0, micro=3, macro=1), 0, 0)
    with pytest.raises(MertoolError, match="needs 3 frames"):
        LongSynthConfig(fps=10, micro_seconds=(0.1, 0.2)).validate()


def test_the_generator_resumes_and_refuses_other_parameters(long_set):
    manifest = generate_long(long_set / "data", LongSynthConfig(**TINY), progress=False)  # finished: reused
    assert manifest.is_file()
    with pytest.raises(MertoolError, match="other parameters"):
        generate_long(long_set / "data", LongSynthConfig(**{**TINY, "seed": 3}), progress=False)
    assert json.loads((long_set / "data" / "synth_long.json").read_text())["params"]["seed"] == 0


# --------------------------------------------------------------------------- longer runs


@pytest.mark.slow
def test_spotting_finds_most_micro_expressions_at_200_fps(tmp_path):
    """A fresh seed (the defaults were tuned on seed 0): 3 subjects x 2 videos of 8 s at 200 fps.
    benchmarks/spot.py reports the full figures."""
    manifest = generate_long(tmp_path / "data", LongSynthConfig(subjects=3, seed=5), jobs=2, progress=False)
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(tmp_path / "long.csv")]) == 0
    run_spot(tmp_path / "long.csv", tmp_path / "spots.csv", SpotConfig(fps=200), jobs=2, progress=False)
    micro = evaluate_spots(tmp_path / "spots.csv", tmp_path / "long.csv").row("micro")
    assert micro["tp"] + micro["fn"] == 18 and micro["f1"] >= 0.75, micro


@pytest.mark.slow
def test_a_killed_spot_run_resumes_to_the_same_result(tmp_path):
    from conftest import run_and_kill

    manifest = generate_long(tmp_path / "data", LongSynthConfig(**{**TINY, "videos": 6}), progress=False)
    long_csv = tmp_path / "long.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(long_csv)]) == 0
    args = ["spot", str(long_csv), "-o", str(tmp_path / "a" / "spots.csv"), "--fps", "30"]
    run_and_kill(args, tmp_path / "a" / "spots.h5.parts", min_shards=2)
    assert cli(args) == 0
    assert cli(["spot", str(long_csv), "-o", str(tmp_path / "b" / "spots.csv"), "--fps", "30"]) == 0
    assert (tmp_path / "a" / "spots.csv").read_text() == (tmp_path / "b" / "spots.csv").read_text()


@pytest.mark.slow
def test_demo_spot_quick(tmp_path, capsys):
    assert cli(["demo", "--spot", "--quick", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "200fps: micro F1" in out and "30fps: micro F1" in out
    summary = json.loads((tmp_path / "spot" / "spot_demo.json").read_text())
    assert set(summary["scores"]) == {"200fps", "30fps"}
    assert list((tmp_path / "spot" / "pictures" / "200fps").glob("spot_*.png"))
