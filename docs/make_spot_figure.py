"""Make docs/spot_curve.png: `mertool spot --preview` on a synthetic 200 fps long video.

Run from the repository root: ``python docs/make_spot_figure.py [WORK]``. It generates the
first two subjects of the default synthetic long-video set (seed 0, the development seed;
a minute or two), spots with the defaults and draws video ``sub02_v2``: three
micro-expressions, one macro-expression and two blinks (which the regions leave out).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from mertool.stages.index import run_index
from mertool.stages.spot import SpotConfig, evaluate_spots, run_spot, write_preview
from mertool.synth_long import LongSynthConfig, generate_long


def main(work: Path) -> Path:
    manifest = generate_long(work / "data", LongSynthConfig(subjects=2), jobs=2, progress=False)
    run_index("manifest", work / "long.csv", sheet=manifest)
    run_spot(work / "long.csv", work / "spots.csv", SpotConfig(fps=200), jobs=2, progress=False)
    scores = evaluate_spots(work / "spots.csv", work / "long.csv")
    (picture,) = write_preview(work / "spots.csv", work / "pictures", scores, videos=["sub02_v2"])
    return Path(shutil.copy(picture, Path(__file__).with_name("spot_curve.png")))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            print(main(Path(tmp)))
