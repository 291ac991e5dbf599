"""Datasets and what is derived from them: frame sources for autoencoder training, anomaly-detection
datasets with per-frame labels, the synthetic benchmark, sampling and the classifier feature cache.
"""
