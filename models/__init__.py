"""Neural networks of pvad: the frame autoencoder (G §3.3.1), feature backbones, the two-stream
anomaly classifier (P §3.2), and checkpoints whose model card carries their preprocessing.

Importing this package registers every built-in architecture and backbone.
"""

from models.autoencoder import (
    Autoencoder,
    Decoder,
    Encoder,
    autoencoder_card,
    encoder_id,
    load_autoencoder,
    untrained_autoencoder,
)
from models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from models.checkpoint import (
    ModelCard,
    build_model,
    list_architectures,
    load_checkpoint,
    load_model,
    register_architecture,
    save_checkpoint,
)
from models.two_stream import TwoStreamClassifier, load_classifier, two_stream_card

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
