"""Models of pvad: the networks, their checkpoints, and how they are trained and evaluated.

Layout (each package's docstring says more):

* ``models/nets/``: the networks (frame autoencoder G §3.3.1, backbones, two-stream classifier P §3.2,
  Darknet YOLO, learned anonymizer), registered by name;
* ``models/checkpoint.py``: checkpoints whose model card carries their preprocessing; ``models/export.py``:
  the camera encoder as ONNX/TorchScript; ``models/latent_noise.py``: the camera's inference-time Gaussian
  mechanism;
* ``models/data/``: datasets (frame sources, anomaly-detection datasets, the synthetic benchmark), sampling,
  the classifier's feature cache;
* ``models/train/``: the trainers (DP autoencoder, classifier with calibration, learned anonymizer);
* ``models/eval/``: the evaluations (detection, privacy, anonymizers, ablation) and their metrics and plots.

Importing this package registers every built-in architecture and backbone.
"""

from models.checkpoint import (
    ModelCard,
    build_model,
    list_architectures,
    load_checkpoint,
    load_model,
    register_architecture,
    save_checkpoint,
)
from models.nets.autoencoder import (
    Autoencoder,
    Decoder,
    Encoder,
    autoencoder_card,
    encoder_id,
    load_autoencoder,
    untrained_autoencoder,
)
from models.nets.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from models.nets.two_stream import TwoStreamClassifier, load_classifier, two_stream_card

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Autoencoder",
    "Backbone",
    "Decoder",
    "Encoder",
    "ModelCard",
    "TwoStreamClassifier",
    "autoencoder_card",
    "build_model",
    "create_backbone",
    "encoder_id",
    "list_architectures",
    "list_backbones",
    "load_autoencoder",
    "load_checkpoint",
    "load_classifier",
    "load_model",
    "register_architecture",
    "register_backbone",
    "save_checkpoint",
    "two_stream_card",
    "untrained_autoencoder",
]
