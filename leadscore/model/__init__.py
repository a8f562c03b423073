"""The scoring model and what it says about a deal.

* :mod:`~leadscore.model.scoring_model`: booster + calibration + category encoding;
* :mod:`~leadscore.model.explain`: probability, score, grade and reasons (TreeSHAP);
* :mod:`~leadscore.model.reasons` and :mod:`~leadscore.model.reason_stats`: reasons in
  words, with facts from the training data;
* :mod:`~leadscore.model.registry`: the MLflow connection, loading a registered version.
"""
