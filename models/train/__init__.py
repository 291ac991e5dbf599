"""Trainers: the DP autoencoder (Opacus), the two-stream classifier (P recipe + calibration), the
learned anonymizer. Each is a facade ``train_*(cfg)`` over its config model.
"""
