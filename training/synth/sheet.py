"""Contact sheet: a grid of thumbnails with the label, and the defective pin circled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

COLOURS = {"OK": (60, 180, 60), "BENDNG": (40, 40, 230), "NUKENG": (0, 160, 255)}


def contact_sheet(
    folder: Path, records: list[dict[str, Any]], out: Path, count: int = 24, cols: int = 6, thumb_w: int = 320
) -> Path:
    """Draw the first `count` images of a generated folder into one PNG at `out`."""
    tiles = []
    for rec in records[:count]:
        img = cv2.imread(str(Path(folder) / "images" / rec["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"{folder}/images/{rec['file']}: missing or not an image")
        colour = COLOURS.get(rec["label"], (255, 255, 255))
        if rec["pin"]:
            bx, by, tx, ty = rec["pins"][rec["pin"] - 1]
            r = int(0.75 * rec["pitch_px"])
            cv2.circle(img, (int((bx + tx) / 2), int((by + ty) / 2)), r, colour, 3, cv2.LINE_AA)
        s = thumb_w / img.shape[1]
        img = cv2.resize(img, (thumb_w, int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        text = f"{rec['file']}  {rec['label']}" + (f" pin {rec['pin']}" if rec["pin"] else "") + f"  [{rec['style']}]"
        cv2.rectangle(img, (0, 0), (thumb_w, 20), (0, 0, 0), -1)
        cv2.putText(img, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
        tiles.append(img)
    if not tiles:
        raise ValueError("no images to put on the sheet")
    h, w = tiles[0].shape[:2]
    while len(tiles) % cols:
        tiles.append(np.zeros((h, w, 3), np.uint8))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), np.vstack(rows)):
        raise OSError(f"could not write {out}")
    return out
