"""Folders of frame images (``000.jpg``, ``001.jpg``, ...), as benchmark datasets ship their videos.

One rule for their order, shared by the camera (a folder as a capture source) and the dataset
readers (models/data/oneclass.py): the number in each file name; a gap in it is refused, since a
missing frame would shift everything after it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pvad.errors import ConfigError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})


def _frame_number(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def frame_files(folder: Path) -> tuple[Path, ...]:
    """The image files of a frame folder in frame order; refuses a gap in their numbering."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    if not files:
        raise ConfigError(f"{folder}: no frame images ({', '.join(sorted(IMAGE_EXTS))})")
    numbered = [(n, p) for p in files if (n := _frame_number(p)) is not None]
    if len(numbered) != len(files):
        return tuple(sorted(files))  # no numbering to check: name order
    numbered.sort()
    numbers = [n for n, _ in numbered]
    expected = range(numbers[0], numbers[0] + len(numbers))
    if numbers != list(expected):
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        dup = len(numbers) != len(set(numbers))
        what = "duplicate frame numbers" if dup else f"missing frame(s) {', '.join(map(str, missing[:10]))}"
        raise ConfigError(f"{folder}: {what} (numbering {numbers[0]}..{numbers[-1]}, {len(numbers)} files)")
    return tuple(p for _, p in numbered)
