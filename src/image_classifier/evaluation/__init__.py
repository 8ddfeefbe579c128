"""Evaluation: metrics, baselines, calibration, out-of-distribution scores, the model card."""

# The metrics a model is summed up by: the baselines are scored on them (metrics.json's
# baseline_*), model.json and reports/export.json carry them, and the web app's model page
# shows them next to the baselines. Here, not in metrics.py: the web app reads it without
# pandas and scikit-learn, which serving does not install.
HEADLINE_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")
