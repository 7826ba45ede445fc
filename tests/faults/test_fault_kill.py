"""Faults: ``kill -9`` at random points of each stage and of train, then resume, compared
array by array with an uninterrupted run; workers die with their parent whatever signal
ends it; ``--jobs N`` equals ``--jobs 1`` bit for bit.

The default tier kills ``align`` once (and takes over the lock the killed run left) and
kills a parent with busy workers; the other stages, train and the other signals are
``slow``. Kill points are drawn from a seeded generator; the seed is in the test's id.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_and_kill
from fault_fixtures import ALIGN, ROOT, alive, assert_same_stage_files, children, kill, make_clips, wait_for
from mertool.cli.main import cli
from mertool.stages.stagefile import open_stage

#: A mertool run whose ``module.func`` (a per-sample compute) hangs from its Nth call on.
_HANGING = """
import importlib, sys, time
module, func, hang_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = [0]

def hang(case, **kw):
    calls[0] += 1
    if calls[0] >= hang_at:
        time.sleep(600)
    return real(case, **kw)

if module != "-":  # "-": nothing hangs
    mod = importlib.import_module(module)
    real = getattr(mod, func)
    setattr(mod, func, hang)
sys.path.insert(0, {tests!r})
if sys.argv[4] == "train":
    from train_fixtures import ensure_tiny
    ensure_tiny()
from mertool.cli.main import main
sys.argv = ["mertool", *sys.argv[4:]]
main()
"""


def _hanging(tmp_path: Path, module: str, func: str, hang_at: int, argv: list[str]) -> subprocess.Popen:
    script = tmp_path / "hanging.py"
    script.write_text(_HANGING.format(tests=str(ROOT / "tests")))
    return subprocess.Popen([sys.executable, str(script), module, func, str(hang_at), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _shards(out: Path) -> int:
    return len(list(out.with_name(out.name + ".parts").glob("*.npz")))


def test_kill9_mid_align_then_resume_takes_over_the_lock(tmp_path, capsys):
    samples = make_clips(tmp_path, n=10)
    reference = tmp_path / "ref" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(reference), *ALIGN]) == 0
    out = tmp_path / "killed" / "aligned.h5"
    at = int(np.random.default_rng(9).integers(1, 6))
    assert run_and_kill(["align", str(samples), "-o", str(out), *ALIGN], out.with_name("aligned.h5.parts"), min_shards=at)
    assert not out.exists() and (out.parent / "aligned.h5.lock").exists()  # the dead run's lock is left
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    assert "taking over the lock of process" in capsys.readouterr().err
    assert_same_stage_files(out, reference)
    assert sorted(p.name for p in out.parent.iterdir()) == ["aligned.h5"]


def _workers(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"loky" in cmdline and b"resource_tracker" not in cmdline:
            out.append(child)
    return out


@pytest.mark.parametrize("sig", [
    signal.SIGKILL,
    pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
    pytest.param(signal.SIGINT, marks=pytest.mark.slow),
])
def test_workers_die_with_their_parent(tmp_path, sig):
    samples = make_clips(tmp_path, n=4)
    out = tmp_path / "aligned.h5"
    proc = _hanging(tmp_path, "mertool.stages.align", "align_case", 1,
                    ["align", str(samples), "-o", str(out), *ALIGN, "--jobs", "2"])
    try:
        assert wait_for(lambda: len(_workers(proc.pid)) >= 2 or proc.poll() is not None, timeout=120)
        workers = _workers(proc.pid)
        assert len(workers) >= 2, proc.stderr.read().decode() if proc.poll() is not None else "no workers"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert wait_for(lambda: not any(alive(w) for w in workers), timeout=5), "worker processes outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_jobs_n_equals_jobs_1_bit_for_bit(tmp_path):
    samples = make_clips(tmp_path, n=4)
    one, two = tmp_path / "j1" / "aligned.h5", tmp_path / "j2" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(one), *ALIGN, "--jobs", "1"]) == 0
    assert cli(["align", str(samples), "-o", str(two), *ALIGN, "--jobs", "2"]) == 0
    assert_same_stage_files(one, two)
    for jobs in ("1", "2"):
        assert cli(["flow", str(one), "-o", str(tmp_path / f"flow{jobs}.h5"), "--size", "32", "--jobs", jobs]) == 0
    assert_same_stage_files(tmp_path / "flow1.h5", tmp_path / "flow2.h5")


# --- slow: every stage and train, at random points ------------------------------------------

STAGES = {  # verb -> (module and per-sample function that hangs, extra options)
    "align": ("mertool.stages.align", "align_case", ALIGN),
    "dynimg": ("mertool.stages.dynimg", "compute_clip", ["--size", "32"]),
    "pairs": ("mertool.stages.pairs", "compute_pair", ["--size", "32"]),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    samples = make_clips(root, n=8, frames=8)
    aligned = root / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN]) == 0
    return samples, aligned


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("verb", sorted(STAGES))
def test_kill9_at_a_random_sample_then_resume(clips, tmp_path, verb, seed):
    samples, aligned = clips
    module, func, extra = STAGES[verb]
    src = samples if verb == "align" else aligned
    reference = tmp_path / "ref.h5"
    assert cli([verb, str(src), "-o", str(reference), *extra]) == 0
    out = tmp_path / "killed.h5"
    at = int(np.random.default_rng(seed).integers(1, 8))  # hangs (and is killed) at sample `at`
    proc = _hanging(tmp_path, module, func, at, [verb, str(src), "-o", str(out), *extra])
    try:
        assert wait_for(lambda: _shards(out) >= at - 1 and out.with_name("killed.h5.parts").exists(), timeout=120)
    finally:
        kill(proc)  # mid-stage (and, if the wait failed, nothing is left running)
    assert not out.exists() and _shards(out) == at - 1
    assert cli([verb, str(src), "-o", str(out), *extra]) == 0
    assert_same_stage_files(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_kill9_mid_flow_then_resume(clips, tmp_path, seed):
    _, aligned = clips
    reference = tmp_path / "ref.h5"
    assert cli(["flow", str(aligned), "-o", str(reference), "--size", "32"]) == 0
    out = tmp_path / "killed.h5"
    at = int(np.random.default_rng(seed).integers(1, 6))
    assert run_and_kill(["flow", str(aligned), "-o", str(out), "--size", "32"], out.with_name("killed.h5.parts"), min_shards=at)
    assert not out.exists()
    assert cli(["flow", str(aligned), "-o", str(out), "--size", "32"]) == 0
    assert_same_stage_files(out, reference)


def _predictions(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 6])
def test_kill9_mid_train_then_resume(tmp_path, seed):
    from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

    ensure_tiny()
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6)
    flow = write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("checkpoint_every: 1\n")
    args = ["train", str(flow), "--model", "tinyflow", "--epochs", "6", "-q", "--device", "cpu", "--config", str(cfg)]
    assert cli([*args, "-o", str(tmp_path / "full")]) == 0
    run = tmp_path / "killed"
    fold = sorted(set(subjects))[int(np.random.default_rng(seed).integers(0, 4))]
    checkpoint = run / "folds" / fold / "checkpoint.pt"
    proc = _hanging(tmp_path, "-", "-", 0, [*args, "-o", str(run)])
    try:
        assert wait_for(lambda: checkpoint.exists() or proc.poll() is not None, timeout=300)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "train finished before it could be killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (run / "predictions.csv").exists()
    assert cli([*args, "-o", str(run)]) == 0
    assert _predictions(run) == _predictions(tmp_path / "full")
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (run, tmp_path / "full")]
    for m in metrics:
        m.pop("train_seconds", None), m.pop("wall_seconds", None)
    assert metrics[0] == metrics[1]
    assert open_stage(flow).verify() == []
