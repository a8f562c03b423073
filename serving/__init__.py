"""Serving: the champion model behind an HTTP API, with reasons.

* :mod:`serving.service`: the BentoML service ``LeadScorer`` (``leadscore serve``).
* :mod:`serving.schemas`: request and response models, documented field by field.
* :mod:`serving.payload`: checks, per-deal features, scores and explanations (no BentoML).
* :mod:`leadscore.model.reasons`: reasons in words, with facts from the training data.
* :mod:`serving.package`: the MLflow-to-BentoML step (``leadscore package``).
"""
