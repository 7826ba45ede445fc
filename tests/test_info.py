"""`mertool info`: per-dataset counts, flow encoding, valid fraction, and a folder given by mistake."""

from __future__ import annotations

import numpy as np

from mertool.cli.main import cli
from mertool.stages.stagefile import StageWriter


def test_info_shows_datasets_encoding_and_valid_fraction(tmp_path, capsys):
    w = StageWriter(tmp_path / "flow.h5", "flow", {"normalise": "minmax255"})
    rows = [("a", "casme2", 1.0), ("b", "samm", 0.7), ("c", "samm", 0.9)]
    for sid, ds, valid in rows:
        w.add(sid, {"flow": np.zeros((3, 4, 4), np.float32)}, {"label": "x", "subject": sid, "dataset": ds, "valid_fraction": valid})
    w.finish([r[0] for r in rows], stacked=True)
    assert cli(["info", str(tmp_path / "flow.h5")]) == 0
    out = capsys.readouterr().out
    assert "datasets:  casme2=1, samm=2" in out
    assert "encoding:  minmax-byte" in out
    assert "valid:     min 70.0%, median 90.0%" in out and "under 80 %: b" in out


def test_info_on_a_folder_points_to_report(tmp_path, capsys):
    assert cli(["info", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "mertool report" in err and "Traceback" not in err
