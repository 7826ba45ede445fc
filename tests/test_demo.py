"""`mertool demo`: step wiring, model routing, resume, failures, and the real chain."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mertool.cli.main import app, cli
from mertool.demo import FULL, QUICK, class_flow_picture, demo_steps, run_demo
from mertool.errors import MertoolError
from mertool.synth import SynthConfig

ROOT = Path(__file__).resolve().parents[1]
VERBS = {c.name for c in app.registered_commands}


def test_steps_follow_the_models_recipe(tmp_path):
    steps = demo_steps(tmp_path / "d")
    assert [s.name for s in steps] == ["synth", "index", "align", "keyframes", "flow", "train", "report"]
    for step in steps:
        verb = step.command.split()[1]
        assert step.command.startswith("mertool ") and verb in VERBS, step.command
    train = next(s for s in steps if s.name == "train").command
    assert f"mertool train {tmp_path / 'd' / 'work' / 'flow112.h5'} --model offtanet" in train


@pytest.mark.parametrize(
    "model,features,flag",
    [
        ("ststnet", "flow28.h5", "--preset ststnet"),
        ("dianet-small", "dynimg64.h5", "--size 64 --channels 3"),
        ("facesleuth-small", "pairs64.h5", "--size 64"),
    ],
)
def test_models_get_the_features_they_read(tmp_path, model, features, flag):
    steps = {s.name: s for s in demo_steps(tmp_path, model=model)}
    assert f"work/{features} --model {model}" in steps["train"].command
    producer = next(s for s in steps.values() if f"work/{features})" in s.command)
    assert flag in producer.command


def test_overwrite_reaches_every_stage(tmp_path, monkeypatch):
    import mertool.recipes
    import mertool.synth

    seen: dict[str, bool] = {}
    monkeypatch.setattr(mertool.recipes, "run_step", lambda step, *a, **kw: seen.__setitem__(step.verb, kw["overwrite"]))
    monkeypatch.setattr(mertool.synth, "generate", lambda *a, **kw: seen.__setitem__("synth", kw["overwrite"]))
    for step in demo_steps(tmp_path, overwrite=True)[:5]:
        if step.name != "index":  # index writes samples.csv afresh each time: nothing to overwrite
            step.run()
    assert seen == {"synth": True, "align": True, "keyframes": True, "flow": True}


def test_bad_model_and_options(tmp_path, capsys):
    with pytest.raises(MertoolError, match="nonesuch"):
        demo_steps(tmp_path, model="nonesuch")
    with pytest.raises(MertoolError, match="epochs"):
        demo_steps(tmp_path, epochs=-1)
    assert cli(["demo", "-o", str(tmp_path), "--model", "nonesuch"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_run_demo_resumes_and_stops_on_a_failed_step(tmp_path, monkeypatch):
    import mertool.demo

    real = mertool.demo.demo_steps
    calls: list[str] = []

    def fake_steps(out, *args, fail: str = "", **kwargs):
        def make(step):
            def run():
                calls.append(step.name)
                if step.name == fail:
                    raise MertoolError("broken on purpose")
                if step.name == "train":
                    run_dir = Path(out) / "runs" / "offtanet"
                    run_dir.mkdir(parents=True, exist_ok=True)
                    (run_dir / "metrics.json").write_text(json.dumps({"uar": 0.5, "uf1": 0.4, "accuracy": 0.5}))
                    (run_dir / "confusion.png").write_bytes(b"png")
            return dataclasses.replace(step, run=run)

        return [make(s) for s in real(out, *args, **kwargs)]

    monkeypatch.setattr(mertool.demo, "demo_steps", fake_steps)
    monkeypatch.setattr(mertool.demo, "class_flow_picture", lambda *a: None)
    lines: list[str] = []
    summary = run_demo(tmp_path / "d", echo=lines.append)
    assert calls == ["synth", "index", "align", "keyframes", "flow", "train", "report"]
    assert summary["metrics"] == {"uar": 0.5, "uf1": 0.4, "accuracy": 0.5}
    assert summary["pictures"]["confusion matrix"] == [str(tmp_path / "d" / "runs" / "offtanet" / "confusion.png")]
    assert json.loads((tmp_path / "d" / "demo.json").read_text())["metrics"]["uar"] == 0.5
    assert any(line.startswith("[5/7] flow: mertool flow --preset offtanet") for line in lines)

    monkeypatch.setattr(mertool.demo, "demo_steps", lambda out, *a, **kw: fake_steps(out, *a, fail="align", **kw))
    with pytest.raises(MertoolError, match="'align' failed: broken on purpose.*re-run"):
        run_demo(tmp_path / "e", echo=lambda s: None)


def test_demo_sh_uses_the_demo_sets():
    text = (ROOT / "pipelines" / "demo.sh").read_text()
    for cfg in (FULL, QUICK):
        assert f"--subjects {cfg.subjects} --per-class {cfg.per_class} --frames {cfg.frames}" in text
    assert "--amplitude " + ",".join(f"{a:g}" for a in FULL.amplitude) in text
    assert re.search(r"--classes " + ",".join(FULL.classes), text)


def test_class_flow_picture_shows_each_class_mean(tmp_path):
    import cv2

    from mertool.stages.stagefile import StageWriter

    w = StageWriter(tmp_path / "flow.h5", "flow", {"t": 1})
    rng = np.random.default_rng(0)
    for i, label in enumerate(["a", "a", "b"]):
        flow = np.zeros((3, 32, 32), np.float32)
        if label == "a":
            flow[0, :16] = 1.0  # rightwards motion in the top half only
        else:
            flow[1] = rng.uniform(0.5, 1.0, (32, 32))  # downwards everywhere
        w.add(f"s{i}", {"flow": flow}, {"label": label, "subject": f"p{i}"})
    w.finish(["s0", "s1", "s2"], stacked=True)
    png = class_flow_picture(tmp_path / "flow.h5", tmp_path / "c.png", tile=1.0)
    img = cv2.imread(str(png))[:, :, ::-1]
    assert img.shape == (290, 2 * 100 + 240, 3)  # 1 in panels at 100 dpi, titles and key
    # the flow row: panels of 96 px (32 px maps x 3) from x = 50 and 150, y = 64
    wheel_a, wheel_b = img[64:160, 50:146][8:88, 8:88], img[64:160, 150:246][8:88, 8:88]
    bright_a, bright_b = wheel_a.max(axis=2), wheel_b.max(axis=2)  # HSV value = magnitude
    assert bright_a[:36].mean() > 200 and bright_a[44:].max() < 5  # motion only where it was
    assert bright_b.mean() > 100
    # rightwards = red hue in the colour wheel
    assert wheel_a[:16, :, 0].mean() > wheel_a[:16, :, 2].mean() + 50


def test_tiny_real_chain_through_the_cli_verbs(tmp_path, capsys):
    """Every verb really runs (2 subjects, 6 clips, 1 epoch): wiring, not accuracy."""
    tiny = SynthConfig(subjects=2, per_class=1, frames=8)
    summary = run_demo(tmp_path / "d", synth=tiny, epochs=1, jobs=1, device="cpu", echo=lambda s: None)
    assert [s["name"] for s in summary["steps"]][-1] == "report"
    assert 0 <= summary["metrics"]["uar"] <= 1
    for what, paths in summary["pictures"].items():
        assert paths and all(Path(p).is_file() for p in paths), what
    first = {s["name"]: s["seconds"] for s in summary["steps"]}
    again = run_demo(tmp_path / "d", synth=tiny, epochs=1, jobs=1, device="cpu", echo=lambda s: None)
    assert again["metrics"] == summary["metrics"]
    assert sum(s["seconds"] for s in again["steps"]) < sum(first.values())  # finished steps reused


@pytest.mark.slow
def test_mertool_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "UAR" in text and "pictures:" in text and "(none written)" not in text
    summary = json.loads((out / "demo.json").read_text())
    assert summary["total_s"] < 300
    assert (out / "pictures" / "align" / "aligned_contact_sheet.png").is_file()
    assert (out / "runs" / "offtanet" / "confusion.png").is_file()
    assert (out / "runs" / "offtanet" / "curves.png").is_file()
    assert "offtanet" in (out / "results.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "work").glob("*.h5")}
    assert cli(["demo", "--quick", "-o", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "work").glob("*.h5")} == stamps


@pytest.mark.parametrize("model, warned", [("ststnet", True), ("offapexnet", True), ("offtanet", False),
                                           ("ststnet-fast", False)])
def test_demo_warns_when_its_budget_is_far_below_the_model_recipe(tmp_path, caplog, model, warned):
    demo_steps(tmp_path, model=model)
    assert ("will likely learn little" in caplog.text) == warned, caplog.text
