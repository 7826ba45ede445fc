"""Fake dataset trees in the labs' real formats (sheets, folder and file-name patterns).

Frames are empty files: indexing only lists names, so fixtures stay fast.
"""

from __future__ import annotations

from pathlib import Path

import openpyxl


def write_xlsx(path: Path, header: list | None, rows: list[list], header_row: int = 1, extra_sheets: dict | None = None) -> Path:
    """A workbook whose first sheet has ``header`` on ``header_row`` (1-based; title rows above)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in range(1, header_row):
        ws.cell(row=r, column=1, value=f"preamble line {r}" if r % 3 else None)
    start = header_row
    if header is not None:
        for c, v in enumerate(header, start=1):
            ws.cell(row=header_row, column=c, value=v)
        start += 1
    for i, row in enumerate(rows):
        for c, v in enumerate(row, start=1):
            ws.cell(row=start + i, column=c, value=v)
    for name, sheet_rows in (extra_sheets or {}).items():
        extra = wb.create_sheet(name)
        for r in sheet_rows:
            extra.append(r)
    wb.save(path)
    return path


def touch_frames(folder: Path, numbers, pattern: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (folder / pattern.format(n)).touch()
    return folder


def assign(counts: dict[str, int], n_subjects: int, n_included: int, included: set[str]) -> list[tuple[int, str]]:
    """(subject, emotion) pairs: included emotions round-robin over subjects 1..n_included,
    the rest over all subjects (so the last subjects hold excluded emotions only)."""
    out: list[tuple[int, str]] = []
    i = j = 0
    for emotion, n in counts.items():
        for _ in range(n):
            if emotion in included:
                out.append((i % n_included + 1, emotion))
                i += 1
            else:
                out.append((n_included + j % max(n_subjects - n_included, 1) + 1 if n_subjects > n_included else j % n_subjects + 1, emotion))
                j += 1
    return out


CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration", "Micro",
               "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]


def casme2_tree(root: Path, counts: dict[str, int], n_subjects: int = 26, n_included: int = 24,
                included: frozenset = frozenset({"happiness", "disgust", "repression", "surprise"})) -> Path:
    """CASME2/ with CASME2-coding-20140508.xlsx and Cropped/sub{NN}/{EPxx_yy}/reg_img{N}.jpg."""
    rows = []
    for k, (sub, emotion) in enumerate(assign(counts, n_subjects, n_included, set(included))):
        name = f"EP{k:03d}_01"
        touch_frames(root / "Cropped" / f"sub{sub:02d}" / name, (10, 11, 12), "reg_img{}.jpg")
        rows.append([sub, name, 10, 11, 12, "4+L10", emotion])
    write_xlsx(root / "CASME2-coding-20140508.xlsx", CASME2_HEADER, rows)
    return root


def samm_tree(root: Path, counts: dict[str, int], n_subjects: int = 32, n_included: int = 28,
              included: frozenset = frozenset({"Happiness", "Anger", "Contempt", "Disgust", "Fear", "Sadness", "Surprise"})) -> Path:
    """SAMM/ with SAMM_Micro_FACS_Codes_v2.xlsx (header row 13) and {sub:03d}/{sub:03d}_k_j/{sub:03d}_{frame:05d}.jpg."""
    rows = []
    for k, (sub, emotion) in enumerate(assign(counts, n_subjects, n_included, set(included))):
        code = sub + 5  # SAMM subjects are 006..037
        name = f"{code:03d}_{k}_1"
        touch_frames(root / "SAMM" / f"{code:03d}" / name, (5560, 5561, 5562), f"{code:03d}_{{:05d}}.jpg")
        rows.append([code, name, "1_1", 5560, 5561, 5562, 3, "Micro - 1/2", "R12", emotion, "1", ""])
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, rows, header_row=13)
    return root


def smic_tree(root: Path, counts: dict[str, int], n_subjects: int = 16) -> Path:
    """SMIC/SMIC_all_raw/HS/s{N}/micro/{emotion}/s{N}_{po|ne|sur}_{NN}/image{N}.bmp."""
    short = {"positive": "po", "negative": "ne", "surprise": "sur"}
    k = 0
    for emotion, n in counts.items():
        for _ in range(n):
            sub = k % n_subjects + 1
            clip = root / "SMIC_all_raw" / "HS" / f"s{sub}" / "micro" / emotion / f"s{sub}_{short.get(emotion, emotion)}_{k:02d}"
            touch_frames(clip, (106271, 106272, 106273), "image{}.bmp")
            k += 1
    return root


CASME_HEADER = ["Subject", "Filename", "OnsetF", "ApexF1", "ApexF2", "OffsetF", "Duration", "Action Units", "Emotion"]


def casme_tree(root: Path, counts: dict[str, int], n_subjects: int, n_included: int, included: set[str]) -> Path:
    """CASME/ with section A and B coding sheets and CASME_raw_selected/sub{NN}/EP{x}_{y}/EP{x}_{y}-{N}.jpg."""
    sections: dict[str, list] = {"A": [], "B": []}
    for k, (sub, emotion) in enumerate(assign(counts, n_subjects, n_included, included)):
        name = f"EP{k:02d}_5"
        touch_frames(root / "CASME_raw_selected" / f"sub{sub:02d}" / name, (1, 2, 3), name + "-{}.jpg")
        sections["A" if sub <= n_subjects // 2 else "B"].append([sub, name, 1, 2, "", 3, 3, "1+2", emotion])
    for sec, rows in sections.items():
        write_xlsx(root / f"CASME_{sec}_Section_coding.xlsx", CASME_HEADER, rows)
    return root


def casme_sq_tree(root: Path, counts: dict[str, int], n_subjects: int, macro: int = 0) -> Path:
    """CAS(ME)^2/ with the headerless code_final workbook + naming rules, rawpic/s{NN}/{NN}_{code}{name}/img{N}.jpg."""
    videos = [("0101", "disgust1", "disgustingteeth"), ("0401", "anger1", "girlcrashing")]
    rows = []
    k = 0
    for emotion, n in list(counts.items()) + [("others", macro)]:
        for i in range(n):
            number = k % n_subjects + 1
            code = 14 + number
            vcode, vname, title = videos[k % 2]
            clip = root / "rawpic" / f"s{code}" / f"{code}_{vcode}{title}"
            touch_frames(clip, range(1, 40), "img{}.jpg")
            kind = "macro-expression" if emotion == "others" and i < macro else "micro-expression"
            onset = 1 + (k // 2 % 5) * 6
            rows.append([number, f"{vname}_{k}", onset, onset + 2, onset + 4, "4+7", emotion, kind, "disgust"])
            k += 1
    rule2 = [[f"s{14 + n}", 14 + n, n] for n in range(1, n_subjects + 1)]
    rule1 = [[v, name] for v, name, _ in videos]
    write_xlsx(root / "CAS(ME)^2code_final.xlsx", None, rows, extra_sheets={"naming rule2": rule2, "naming rule1": rule1})
    return root
