"""A run split into fold jobs (--folds / --fold-index), pooled (--collect, or by the last job),
against one whole run; --json on train; report --format; pipelines/slurm_loso.sh."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.train.loso import make_folds
from mertool.train.run import select_folds
from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()
ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--model", "tinyflow", "--epochs", "3", "-q", "--device", "cpu"]
TIMING = {"wall_seconds", "train_seconds"}


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    x, labels, subjects = synthetic_flow(n_subjects=5, per_subject=4)
    return write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)


def _outputs(run: Path) -> dict:
    """What must not depend on how the run was split: metrics (less timing), predictions, folds table (less seconds)."""
    metrics = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}
    folds = [{k: v for k, v in row.items() if k != "seconds"}
             for row in csv.DictReader(io.StringIO((run / "folds.csv").read_text()))]
    info = json.loads((run / "run.json").read_text())
    return {"metrics": metrics, "predictions": (run / "predictions.csv").read_text(), "folds": folds,
            "status": info["status"], "identity": info["identity"],
            "plots": sorted(p.name for p in run.glob("*.png"))}


def _whole(flow_file: Path, tmp_path: Path, *extra: str) -> dict:
    run = tmp_path / "whole"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), *extra]) == 0
    return _outputs(run)


def _fold_names(n: int = 5) -> list[str]:
    return [f"s{i + 1}" for i in range(n)]


# -- which folds a job trains ---------------------------------------------------------------


def test_fold_index_slices_are_contiguous_near_equal_and_cover_every_fold_once():
    subjects = [f"s{i}" for i in range(1, 27) for _ in range(2)]
    folds = make_folds(subjects, "loso")
    for n in (1, 2, 3, 5, 7, 26, 30):
        parts = [select_folds(folds, part=(i, n)) for i in range(1, n + 1)]
        assert sum(parts, []) == list(range(26))  # in order, each fold once
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
        assert all(p == list(range(p[0], p[-1] + 1)) for p in parts if p)  # contiguous
    assert select_folds(folds, part=(2, 3)) == list(range(9, 18))  # 26 = 9 + 9 + 8


def test_fold_index_with_fold_batch_slices_whole_groups():
    folds = make_folds([f"s{i}" for i in range(1, 11)], "loso")
    parts = [select_folds(folds, part=(i, 2), fold_batch=3) for i in (1, 2)]
    assert parts == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9]]  # groups (0-2)(3-5) | (6-8)(9), as one whole run groups them


def test_fold_selection_refusals():
    folds = make_folds(["a", "b", "c"], "loso")
    assert select_folds(folds, names=["c", "a"]) == [0, 2]  # run order
    with pytest.raises(MertoolError, match="unknown fold.*zz.*a, b, c"):
        select_folds(folds, names=["a", "zz"])
    with pytest.raises(MertoolError, match="1 <= I <= N"):
        select_folds(folds, part=(4, 3))
    with pytest.raises(MertoolError, match="not both"):
        select_folds(folds, names=["a"], part=(1, 2))


# -- split jobs against one whole run --------------------------------------------------------


def test_fold_index_jobs_then_automatic_pool_equal_one_whole_run(flow_file, tmp_path, capsys):
    whole = _whole(flow_file, tmp_path)
    run = tmp_path / "split"
    for i in (1, 2):
        assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", f"{i}/3"]) == 0
        assert not (run / "metrics.json").exists() and json.loads((run / "run.json").read_text())["status"] == "running"
    done = sorted(p.parent.name for p in run.glob("folds/*/result.json"))
    assert done == ["s1", "s2", "s3", "s4"]  # 5 folds in 3 slices: 2 + 2 + 1
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", "3/3"]) == 0  # the last job pools
    assert _outputs(run) == whole
    assert not list(tmp_path.glob("*.lock")) and not list(run.glob("folds/*.lock"))  # locks released


def test_jobs_on_kinds_of_device_record_each_folds_precision_and_warn_when_mixed(flow_file, tmp_path, capsys,
                                                                                 monkeypatch):
    """--amp auto is fp32 on CPU and bf16 on a (bf16) GPU: a run whose fold jobs ran on both says so per fold,
    in metrics.json and on the console (the second job stands in for a GPU node by amp_mode's GPU answer)."""
    from mertool.train import fold as fold_mod

    run = tmp_path / "split"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", "1/2"]) == 0
    monkeypatch.setattr(fold_mod, "amp_mode", lambda amp, device: (True, torch.bfloat16))  # amp_mode(True, cuda)
    capsys.readouterr()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", "2/2"]) == 0
    folds = list(csv.DictReader(io.StringIO((run / "folds.csv").read_text())))
    assert [(f["fold"], f["device"], f["precision"]) for f in folds] == [
        ("s1", "cpu", "fp32"), ("s2", "cpu", "fp32"), ("s3", "cpu", "fp32"), ("s4", "cpu", "bf16"), ("s5", "cpu", "bf16")]
    assert json.loads((run / "metrics.json").read_text())["precision"] == "mixed: bf16 (2 folds), fp32 (3 folds)"
    err = capsys.readouterr().err
    assert "the folds trained in different precisions (bf16 (2 folds), fp32 (3 folds)" in err and "--amp off" in err
    # one kind of device: one precision, no warning
    monkeypatch.undo()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(tmp_path / "whole")]) == 0
    assert json.loads((tmp_path / "whole" / "metrics.json").read_text())["precision"] == "fp32"
    assert "different precisions" not in capsys.readouterr().err


def test_folds_jobs_and_collect_equal_one_whole_run(flow_file, tmp_path, capsys):
    whole = _whole(flow_file, tmp_path)
    run = tmp_path / "split"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--folds", "s2,s4"]) == 0
    capsys.readouterr()
    assert cli(["train", "--collect", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "3 of 5 folds unfinished: s1, s3, s5" in err
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--folds", "s1,s3,s5"]) == 0
    first = _outputs(run)
    assert first == whole
    (run / "metrics.json").unlink()
    assert cli(["train", "--collect", str(run), "--json"]) == 0  # collecting again writes the same outputs
    assert _outputs(run) == whole
    assert json.loads(capsys.readouterr().out) == json.loads((run / "metrics.json").read_text())


def test_collect_from_another_folder_finds_the_features_by_their_absolute_path(flow_file, tmp_path, capsys,
                                                                             monkeypatch):
    """Jobs given a relative features path; --collect run from elsewhere still finds the file."""
    whole = _whole(flow_file, tmp_path)
    monkeypatch.chdir(flow_file.parent)
    run = tmp_path / "split"
    for folds in ("s1,s2,s3", "s4,s5"):
        assert cli(["train", flow_file.name, *QUICK, "-o", str(run), "--folds", folds]) == 0
    assert json.loads((run / "run.json").read_text())["inputs"][0]["path"] == flow_file.name
    (run / "metrics.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli(["train", "--collect", str(run)]) == 0
    assert _outputs(run) == whole
    flow_file.rename(tmp_path / "moved.h5")  # neither path leads to it now
    capsys.readouterr()
    assert cli(["train", "--collect", str(run)]) == 1
    assert "not found; collect from the folder the jobs ran in" in capsys.readouterr().err


def test_a_job_with_other_parameters_is_refused(flow_file, tmp_path, capsys):
    run = tmp_path / "split"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", "1/2"]) == 0
    capsys.readouterr()
    assert cli(["train", str(flow_file), *QUICK, "--lr", "0.5", "-o", str(run), "--fold-index", "2/2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different config or input" in err
    assert not (run / "folds" / "s4" / "result.json").exists()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--fold-index", "2/2", "--overwrite"]) == 2


def test_cli_refusals(flow_file, tmp_path, capsys):
    run = str(tmp_path / "r")
    cases = [
        (["--folds", "s1", "--fold-index", "1/2"], "not both"),
        (["--fold-index", "3/2"], "1 <= I <= N"),
        (["--fold-index", "x"], "1 <= I <= N"),
    ]
    for extra, message in cases:
        assert cli(["train", str(flow_file), *QUICK, "-o", run, *extra]) == 2
        assert message in capsys.readouterr().err
    assert cli(["train", str(flow_file), *QUICK, "-o", run, "--folds", "s1,nobody"]) == 2
    assert "unknown fold(s) nobody" in capsys.readouterr().err
    assert cli(["train", "--collect", run, "--epochs", "3"]) == 2
    assert "--collect takes only the run folder" in capsys.readouterr().err
    assert cli(["train", "--collect", str(tmp_path)]) == 1
    assert "not a mertool run directory" in capsys.readouterr().err


def test_stacked_groups_split_by_fold_index_equal_one_whole_stacked_run(flow_file, tmp_path):
    """--fold-batch 2: the jobs train the groups one whole run trains."""
    whole = _whole(flow_file, tmp_path, "--fold-batch", "2")
    run = tmp_path / "split"
    for i in (2, 1):
        assert cli(["train", str(flow_file), *QUICK, "--fold-batch", "2", "-o", str(run), "--fold-index", f"{i}/2"]) == 0
    assert _outputs(run) == whole


def test_seeds_split_into_jobs_equal_a_whole_run_over_seeds(flow_file, tmp_path, capsys):
    seeds = ["--seeds", "0,1"]
    assert cli(["train", str(flow_file), *QUICK, "-o", str(tmp_path / "whole"), *seeds]) == 0
    run = tmp_path / "split"
    capsys.readouterr()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), *seeds, "--fold-index", "1/2", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "running" and status["missing_folds"] == ["seed_0/s4", "seed_0/s5", "seed_1/s4", "seed_1/s5"]
    assert not (run / "metrics.json").exists()
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), *seeds, "--fold-index", "2/2"]) == 0
    for seed in ("seed_0", "seed_1"):
        assert _outputs(run / seed) == _outputs(tmp_path / "whole" / seed)
    split, whole = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("split", "whole"))
    for key in ("uf1", "uf1_sd", "uar", "uar_sd", "accuracy_per_seed"):
        assert split[key] == whole[key]
    (run / "metrics.json").unlink()
    assert cli(["train", "--collect", str(run)]) == 0  # a folder over seeds: each seed, then the summary
    assert json.loads((run / "metrics.json").read_text())["uf1_sd"] == whole["uf1_sd"]


_JOB = (
    "import sys; sys.path.insert(0, {tests!r}); import train_fixtures; train_fixtures.ensure_tiny(); "
    "from mertool.cli.main import cli; sys.exit(cli(sys.argv[1:]))"
)


@pytest.mark.slow
def test_concurrent_fold_jobs_share_one_run_folder(flow_file, tmp_path):
    """Three jobs started at once on a fresh run folder (as a SLURM array starts them), each its own process."""
    whole = _whole(flow_file, tmp_path)
    run = tmp_path / "split"
    env = {**os.environ, "MERTOOL_QUIET": "1", "OMP_NUM_THREADS": "1"}
    code = _JOB.format(tests=str(ROOT / "tests"))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, "train", str(flow_file), *QUICK, "-o", str(run),
                          "--fold-index", f"{i}/3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in (1, 2, 3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert _outputs(run) == whole
    assert not list(tmp_path.glob("*.lock")) and not list(run.glob("folds/*.lock"))


def test_a_fold_held_by_another_job_is_refused_by_name(flow_file, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--folds", "s1"]) == 0
    holder = subprocess.Popen(  # another job, training s2
        [sys.executable, "-c", "import sys, time; from mertool.train.rundir import RunDir; "
         f"lock = RunDir({str(run)!r}).fold('s2').lock(); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--folds", "s2,s3"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"folds/s2: being written by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (run / "folds" / "s3" / "result.json").exists()  # nothing trained while refused


# -- machine-readable output -----------------------------------------------------------------


def test_train_json_prints_only_the_metrics_on_stdout(flow_file, tmp_path, capsys):
    run = tmp_path / "r"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == json.loads((run / "metrics.json").read_text())
    assert "UF1" in out.err  # the console summary stays on stderr
    assert cli(["train", str(flow_file), *QUICK, "-o", str(tmp_path / "s"), "--seeds", "0,1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((tmp_path / "s" / "metrics.json").read_text()) and summary["seeds"] == [0, 1]


def test_report_formats_hold_the_same_rows(flow_file, tmp_path, capsys):
    runs = [tmp_path / "a", tmp_path / "b"]
    assert cli(["train", str(flow_file), *QUICK, "-o", str(runs[0])]) == 0
    assert cli(["train", str(flow_file), *QUICK, "-o", str(runs[1]), "--seeds", "0,1"]) == 0
    capsys.readouterr()
    tables = {}
    for fmt in ("text", "json", "csv", "md", "markdown"):
        assert cli(["report", *map(str, runs), "--format", fmt]) == 0
        tables[fmt] = capsys.readouterr().out
    rows = json.loads(tables["json"])
    by_csv = list(csv.DictReader(io.StringIO(tables["csv"])))
    assert [list(r) for r in rows] == [list(r) for r in by_csv] and len(rows) == 2
    for obj, cells in zip(rows, by_csv):
        for key, cell in cells.items():
            value = obj[key]
            assert (str(value) if isinstance(value, str) else value) == (
                cell if isinstance(value, str) else type(value)(cell)), key
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert rows[0]["run"] == str(runs[0]) and rows[0]["UF1"] == round(metrics["uf1"], 4) and rows[0]["folds"] == 5
    assert isinstance(rows[1]["UF1"], str) and "±" in rows[1]["UF1"]  # mean ± sd over seeds, as in the table
    md = tables["md"].splitlines()
    assert tables["md"] == tables["markdown"] and len(md) == 4 and md[0].startswith("| run | model |")
    text = tables["text"].splitlines()
    assert len(text) == 3 and text[0].split()[:2] == ["run", "model"]
    for cells, line in zip(by_csv, text[1:]):
        assert line.startswith(cells["run"]) and cells["UF1"] in line and cells["UAR"] in line
    assert cli(["report", str(runs[0]), "--format", "xml"]) == 2


# -- pipelines/slurm_loso.sh -----------------------------------------------------------------

SCRIPT = ROOT / "pipelines" / "slurm_loso.sh"


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(MPLBACKEND="Agg", MERTOOL_QUIET="1", **extra)
    return env


def test_slurm_script_submits_an_array_then_a_collect_job_after_it(tmp_path):
    """A stand-in sbatch records its arguments: one array of N tasks, one collect job depending on it."""
    (tmp_path / "bin").mkdir()
    log = tmp_path / "sbatch.log"
    fake = tmp_path / "bin" / "sbatch"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\n'
                    'n=$(wc -l < ' f'{log}); echo "$((100 + n));cluster"\n')
    fake.chmod(0o755)
    (tmp_path / "flow.h5").write_bytes(b"")
    result = subprocess.run(["bash", str(SCRIPT), "flow.h5", "ststnet-fast", "4", "runs/x", "--epochs", "2"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env=_env(tmp_path, SBATCH_ARGS="--partition=gpu --time=01:00:00"))
    assert result.returncode == 0, result.stderr
    array, collect = log.read_text().splitlines()
    assert "--array=1-4" in array and "--partition=gpu --time=01:00:00" in array and "LOSO_STEP=train" in array
    assert array.endswith(f"{SCRIPT} flow.h5 ststnet-fast 4 runs/x --epochs 2")
    assert "--dependency=afterok:101" in collect and "LOSO_STEP=collect" in collect
    assert "array job 101" in result.stdout and "collect as job 102" in result.stdout


@pytest.mark.parametrize("args,message", [
    (["f.h5", "m", "0", "r"], "N must be a positive number"),
    (["f.h5", "m", "x", "r"], "N must be a positive number"),
    (["missing.h5", "m", "2", "r"], "missing.h5: features file not found"),
])
def test_slurm_script_argument_errors(tmp_path, args, message):
    (tmp_path / "bin").mkdir()
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=tmp_path,
                            env=_env(tmp_path))
    assert result.returncode == 2 and message in result.stderr
    result = subprocess.run(["bash", str(SCRIPT), "f.h5", "m", "2", "r"], capture_output=True, text=True,
                            cwd=tmp_path, env=_env(tmp_path, LOSO_STEP="train"))
    assert result.returncode == 2 and "needs SLURM_ARRAY_TASK_ID" in result.stderr


@pytest.mark.slow
def test_slurm_script_task_bodies_train_and_collect_a_run(tmp_path):
    """The array tasks and the collect step, run by hand as SLURM would run them, on a real model."""
    (tmp_path / "bin").mkdir()
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=4, size=28)
    write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)
    base = ["bash", str(SCRIPT), "flow.h5", "ststnet-fast", "2", "runs/x", "--epochs", "1", "--device", "cpu"]
    for task in ("2", "1"):
        result = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path,
                                env=_env(tmp_path, LOSO_STEP="train", SLURM_ARRAY_TASK_ID=task))
        assert result.returncode == 0, result.stderr
    assert sorted(p.parent.name for p in (tmp_path / "runs/x").glob("folds/*/result.json")) == ["s1", "s2", "s3"]
    pooled = json.loads((tmp_path / "runs/x/metrics.json").read_text())  # the task finishing the last fold pooled
    result = subprocess.run(base, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path, LOSO_STEP="collect"))
    assert result.returncode == 0, result.stderr
    assert "runs/x" in result.stdout and "UF1" in result.stdout  # the report table
    again = json.loads((tmp_path / "runs/x/metrics.json").read_text())
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in pooled.items() if k not in TIMING}
