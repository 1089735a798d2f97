"""Calibrating a draft's confidences: sequential temperature scaling (STS) and its metrics.

- :mod:`.metrics`: ECE, AUROC and Brier score of survival predictions, reliability bins;
- :mod:`.sts`: fitting one temperature per slot, left to right, on the cumulative product;
- :mod:`.collect`: gathering confidences and acceptance outcomes from real generations;
- :mod:`.temperatures`: applying and storing the temperatures;
- :mod:`.report`: the before/after table and reliability diagram.
"""

from dspark_hf.verification.calibration.metrics import auroc, brier, expected_calibration_error
from dspark_hf.verification.calibration.sts import fit_sequential_temperatures, survival_predictions
from dspark_hf.verification.calibration.temperatures import apply_temperatures, draft_temperatures, store_temperatures

__all__ = [
    "apply_temperatures",
    "auroc",
    "brier",
    "draft_temperatures",
    "expected_calibration_error",
    "fit_sequential_temperatures",
    "store_temperatures",
    "survival_predictions",
]
