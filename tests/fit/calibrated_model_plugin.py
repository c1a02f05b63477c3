"""pytest plugin: run any test suite against the shipped calibration of the default model.

    PYTHONPATH=tests/fit .venv/bin/python -m pytest tests/model -p calibrated_model_plugin

Loaded before the test modules are imported, it puts the calibrated declaration where the
engine (``cartwin.model.MODELS``) and the model's behaviour tests (``cartwin.model.DEFAULT_MODEL``)
look for the default model, so the behaviour tests judge the calibrated parameter set.
"""

import warnings

import cartwin.model
import cartwin.model.lupus_cart
from cartwin.fit.calibration import apply_calibration, latest_calibration

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a changed model is reported by the calibration test itself
    CALIBRATED = apply_calibration(latest_calibration("lupus_cart"))

cartwin.model.DEFAULT_MODEL = CALIBRATED
cartwin.model.lupus_cart.MODEL = CALIBRATED
cartwin.model.MODELS[CALIBRATED.name] = CALIBRATED


def pytest_report_header(config):
    return f"calibrated default model from {latest_calibration('lupus_cart').name}"
