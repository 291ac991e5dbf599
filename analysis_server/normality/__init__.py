"""Each camera's own normality model (DESIGN §10): features of what the server sees, a density of
what was normal for that camera, and the learning → scoring lifecycle.

* ``features``: what is measured per frame (grid-cell motion and foreground);
* ``objects``: per detected object its size, place and in-box velocity, in units of the camera's
  learnt perspective, and their nearest-neighbour density;
* ``density``: nearest-neighbour distances per grid position (scikit-learn KD-trees);
* ``model``: fitting, the threshold from held-out learning frames, σ_t, (de)serialisation;
* ``camera``: one camera's state: learning buffer (bounded), smoothing, phase.
"""

from analysis_server.normality.camera import CameraNormality, NormalityStep, Phase
from analysis_server.normality.features import MotionGrid
from analysis_server.normality.model import NormalityModel, fuse

__all__ = ["CameraNormality", "MotionGrid", "NormalityModel", "NormalityStep", "Phase", "fuse"]
