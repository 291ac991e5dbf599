"""pvad: privacy-preserving video anomaly detection from the edge to the cloud."""

__version__ = "0.1.0"
