"""`budgetft run`: baselines -> calibration -> plan -> tuning (Ray Tune + ASHA) -> report,
under a hard dollar cap."""
