"""Training of the win-probability model, its evaluation and the MLflow registry moves.

* :mod:`training.train`: ``train_from_store`` / ``train`` (MLflow) and the pure
  ``fit_and_evaluate`` / ``fit_scoring_model``;
* :mod:`training.split`: time split by close date; :mod:`training.calibration`;
  :mod:`training.baselines`; :mod:`training.evaluate` (metrics);
* :mod:`training.behaviour`: directional checks that gate promotion;
* :mod:`training.registry`: register, promote, roll back, list (loading a version to
  score with is :mod:`leadscore.model.registry`, shared with ranking and serving);
* :mod:`training.report`: plots and the model card.
"""
