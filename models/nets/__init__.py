"""Networks of pvad and their architecture registry entries: the frame autoencoder (G §3.3.1), feature
backbones, the two-stream classifier (P §3.2), the Darknet YOLO, the learned anonymizer.
"""
