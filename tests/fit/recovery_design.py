"""The known truth of the recovery study (tests/fit/conftest.py), importable by the tests."""

TRUTH = {"RHO": 2.1, "K_E": 0.16, "MTT_PRE": 55.0}  # the declared values of model 0.6.0 (unchanged in 0.7.0)
OMEGA = {"RHO": 0.15, "K_E": 0.2, "MTT_PRE": 0.25}
SIGMA = {"CART": 0.3, "BCELL": 0.25}
LLOQ = {"CART": 0.01}
START = {"RHO": 1.6, "K_E": 0.25, "MTT_PRE": 40.0}  # away from the truth, as a user's guess would be
STUDY_SEED = 3
