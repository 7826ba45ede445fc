"""Stages and fold jobs on dask.distributed (``MERTOOL_SCHEDULER`` / ``mertool --scheduler``).

One 2-worker LocalCluster (processes, one thread each) serves the module; each test
points ``MERTOOL_SCHEDULER`` at it. The reference is always a local run of the same
work (``--jobs 1``, or ``--jobs 2`` for training): same arrays, same content key.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from flow_fixtures import face_clip, write_aligned

distributed = pytest.importorskip("distributed")

from mertool import cluster  # noqa: E402
from mertool.cli.main import cli  # noqa: E402
from mertool.errors import MertoolError  # noqa: E402
from mertool.parallel import parallel_map  # noqa: E402
from mertool.stages._driver import Case, run_stage  # noqa: E402
from mertool.stages.flow import FlowConfig, run_flow  # noqa: E402
from mertool.stages.stagefile import StageWriter, open_stage  # noqa: E402


@pytest.fixture(scope="module")
def dask_cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as lc, distributed.Client(lc, set_as_default=False) as client:
        yield lc, client


@pytest.fixture
def on_cluster(dask_cluster, monkeypatch):
    lc, client = dask_cluster
    monkeypatch.setenv(cluster.SCHEDULER_ENV, lc.scheduler_address)
    return client


def _tasks_run(client, block) -> int:
    """How many mertool tasks the cluster ran during ``block()``."""
    with distributed.get_task_stream(client=client) as ts:
        block()
    return sum(1 for t in ts.data if t["key"].startswith("_task"))


def _same_files(a: Path, b: Path) -> None:
    fa, fb = open_stage(a), open_stage(b)
    assert fa.key == fb.key and fa.sample_ids == fb.sample_ids and fa.failed == fb.failed
    for sid in fa.sample_ids:
        x, y = fa.sample(sid), fb.sample(sid)
        assert x.keys() == y.keys()
        for name in x:
            assert x[name].dtype == y[name].dtype and np.array_equal(x[name], y[name]), (sid, name)


# --- one real stage: byte-identical to a local run --------------------------------------------


def _aligned(tmp_path: Path, n: int = 6) -> Path:
    samples = [
        {"id": f"c{i}", "frames": face_clip(64, 3, (0.4 + 0.1 * i, -0.2)), "apex": 3, "subject": f"s{i % 3}"}
        for i in range(n)
    ]
    return write_aligned(tmp_path / "aligned.h5", samples)


def test_flow_on_the_cluster_is_byte_identical_to_jobs_1(tmp_path, on_cluster, monkeypatch):
    aligned = _aligned(tmp_path)
    config = FlowConfig.resolve(size=64)
    ran = _tasks_run(on_cluster, lambda: run_flow(aligned, tmp_path / "dask.h5", config, progress=False))
    assert ran == 6  # every sample was a task on the cluster
    monkeypatch.delenv(cluster.SCHEDULER_ENV)
    run_flow(aligned, tmp_path / "local.h5", config, jobs=1, progress=False)
    _same_files(tmp_path / "dask.h5", tmp_path / "local.h5")


def test_flow_verb_with_scheduler_env(tmp_path, on_cluster, capsys):
    aligned = _aligned(tmp_path, 3)
    assert cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--size", "64", "--jobs", "1"]) == 0
    assert len(open_stage(tmp_path / "f.h5")) == 3


# --- lost workers and failing samples ------------------------------------------------------


def _toy(case: Case, *, marker: Path | None = None, die: str = "", bad: str = "") -> dict[str, np.ndarray]:
    """A deterministic per-sample result; kills its worker at ``die`` (only once with a ``marker``)."""
    if case.sample_id == die and (marker is None or not marker.exists()):
        if marker is not None:
            marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    if case.sample_id == bad:
        raise ValueError("bad sample")
    seed = int(case.sample_id[1:])
    return {"x": np.random.default_rng(seed).normal(size=(4, 5)).cumsum(0).astype(np.float32)}


def _toy_stage(out: Path, compute, jobs: int = 1):
    ids = [f"t{i}" for i in range(8)]
    writer = StageWriter(out, "toy", {"n": len(ids)})
    load = lambda sid: Case(sid, {"subject": "s1"}, None)  # noqa: E731
    return run_stage(writer, ids, load, compute, stacked=True, desc="toy", jobs=jobs, progress=False)


def test_a_killed_worker_s_sample_is_retried_elsewhere(tmp_path, on_cluster, monkeypatch):
    marker = tmp_path / "died"
    res = _toy_stage(tmp_path / "dask.h5", partial(_toy, marker=marker, die="t3"))
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker really died mid-task
    assert res.done == 8 and res.failed == {}
    monkeypatch.delenv(cluster.SCHEDULER_ENV)
    _toy_stage(tmp_path / "local.h5", _toy)
    _same_files(tmp_path / "dask.h5", tmp_path / "local.h5")


@pytest.mark.slow
def test_a_sample_that_kills_every_worker_is_that_sample_s_failure(tmp_path, on_cluster):
    # a crash in native code (here SIGKILL) on every try: after dask's allowed failures the
    # sample is reported failed, the others are in the file
    res = _toy_stage(tmp_path / "dask.h5", partial(_toy, die="t2"))
    assert res.done == 7 and list(res.failed) == ["t2"] and "killed every dask worker" in res.failed["t2"]


def test_a_failing_sample_is_reported_like_a_local_failure(tmp_path, on_cluster, monkeypatch):
    res = _toy_stage(tmp_path / "dask.h5", partial(_toy, bad="t5"))
    assert res.done == 7 and res.failed == {"t5": "bad sample"}
    monkeypatch.delenv(cluster.SCHEDULER_ENV)
    _toy_stage(tmp_path / "local.h5", partial(_toy, bad="t5"), jobs=2)
    _same_files(tmp_path / "dask.h5", tmp_path / "local.h5")


def test_a_shard_sink_outliving_its_run_writes_nothing(tmp_path):
    # a cluster task still running after its driver was killed must not leave its shard
    # in a later run of other parameters (the sink checks the folder's plan first)
    old = StageWriter(tmp_path / "o.h5", "toy", {"n": 1})
    sink = old.sink("t1")
    old.close()
    new = StageWriter(tmp_path / "o.h5", "toy", {"n": 2}, overwrite=True)
    with pytest.raises(MertoolError, match="no longer this run's shard folder; sample t1 not written"):
        sink.add({"x": np.zeros(3)}, {})
    assert new.pending(["t1"]) == ["t1"] and not list(new.parts.glob("*.npz"))
    new.sink("t1").add({"x": np.zeros(3)}, {})  # the new run's own sink writes
    assert new.pending(["t1"]) == []
    new.close()


def _boom(x: int) -> int:
    raise RuntimeError(f"bug at {x}")


def test_a_bug_in_a_task_raises_here(on_cluster):
    with pytest.raises(RuntimeError, match="bug at"):
        list(parallel_map(_boom, [1, 2], progress=False))


# --- workers: one thread, no nested cluster -----------------------------------------------


def _threads(_: int) -> tuple[str, int]:
    import cv2

    return os.environ.get("OMP_NUM_THREADS", ""), cv2.getNumThreads()


def test_workers_are_single_threaded(on_cluster):
    assert set(parallel_map(_threads, range(4), progress=False)) == {("1", 1)}


def _nested(n: int) -> int:
    return sum(parallel_map(abs, range(-n, n), jobs=2, progress=False))


def test_local_cluster_spec_and_no_nested_cluster(monkeypatch):
    # local:2 starts (and closes) its own cluster; its workers inherit MERTOOL_SCHEDULER but
    # run work a task fans out in that task
    monkeypatch.setenv(cluster.SCHEDULER_ENV, "local:2")
    assert sorted(parallel_map(_nested, [1, 2, 3], progress=False)) == [1, 4, 9]


# --- training folds on the cluster ----------------------------------------------------------


def _predictions(run: Path) -> list[list[str]]:
    return sorted(line.split(",") for line in (run / "predictions.csv").read_text().splitlines()[1:])


@pytest.mark.slow
@pytest.mark.parametrize("fold_batch, tasks", [(1, 3), (2, 2)])  # folds one by one; stacked groups of 2 + 1
def test_fold_jobs_on_the_cluster_match_a_local_run(tmp_path, on_cluster, monkeypatch, fold_batch, tasks):
    from train_fixtures import synthetic_flow, write_flow_h5

    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=6, size=28)
    path = write_flow_h5(tmp_path / "f28.h5", x, labels, subjects)
    base = ["train", str(path), "--model", "ststnet-fast", "--epochs", "2", "-q", "--device", "cpu",
            "--fold-batch", str(fold_batch), "--jobs", "2"]
    ran = _tasks_run(on_cluster, lambda: cli([*base, "-o", str(tmp_path / "dask")]))
    assert ran == tasks
    monkeypatch.delenv(cluster.SCHEDULER_ENV)
    assert cli([*base, "-o", str(tmp_path / "local")]) == 0
    assert _predictions(tmp_path / "dask") == _predictions(tmp_path / "local")


# --- bad input ------------------------------------------------------------------------------


def test_spec_parsing():
    assert cluster.local_workers("local:3") == 3
    assert cluster.local_workers("local") == (os.cpu_count() or 1)
    assert cluster.local_workers("tcp://10.0.0.1:8786") is None
    for bad in ("local:0", "local:x", "local:-2"):
        with pytest.raises(MertoolError, match="local:N"):
            cluster.local_workers(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_error_line(tmp_path, monkeypatch, capsys):
    aligned = _aligned(tmp_path, 2)
    address = f"tcp://127.0.0.1:{_free_port()}"
    monkeypatch.setenv(cluster.SCHEDULER_ENV, address)
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: {address}: cannot reach the dask scheduler")


def test_without_dask_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    aligned = _aligned(tmp_path, 2)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    monkeypatch.setenv(cluster.SCHEDULER_ENV, "local:2")
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and 'pip install "mertool[dask]"' in err[0]


def test_dask_stages_sh_checks_its_arguments_before_starting_anything(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "pipelines" / "dask_stages.sh"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(["bash", str(script), "none.csv", "ststnet", "work"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 2 and "error: none.csv: samples.csv not found" in result.stderr
    assert not any(tmp_path.iterdir())  # no scheduler started, no folder made
