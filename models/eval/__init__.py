"""Evaluations: detection (FL-AUC, VL-F1, plots), privacy (quality, faces, re-identification, attacks),
the anonymizer table, ablation; and the metrics, face models and plot helpers they share.
"""
