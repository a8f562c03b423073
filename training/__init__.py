"""Training of the win-probability model, its evaluation and the MLflow registry.

* :mod:`training.train`: ``train_from_store`` / ``train`` (MLflow) and the pure
  ``fit_and_evaluate`` / ``fit_scoring_model``;
* :mod:`training.split`: time split by close date; :mod:`training.calibration`;
  :mod:`training.baselines`; :mod:`training.evaluate` (metrics);
* :mod:`leadscore.model.reason_stats`: training facts for serving's tooltips;
* :mod:`training.behaviour`: directional checks that gate promotion;
* :mod:`training.registry`: ``load_scoring_model``, promote, rollback, list;
* :mod:`training.report`: plots and the model card; :mod:`training.tabular`: flat tables.
"""
