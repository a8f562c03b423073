"""Serving only: the champion model behind an HTTP API. Scores, grades and reasons come
from :mod:`leadscore.model.explain`; nothing here is needed to train or rank.

* :mod:`serving.service`: the BentoML service ``LeadScorer`` (``leadscore serve``);
* :mod:`serving.schemas`: request and response models, documented field by field;
* :mod:`serving.payload`: checks and features of deals sent in full (no BentoML);
* :mod:`serving.online`: the Feast online store, opened once, track records cached;
* :mod:`serving.auth`: the bearer token on scoring endpoints and the managers' page;
* :mod:`serving.leads_page`: the managers' priority page mounted at ``/leads``;
* :mod:`serving.package`: the MLflow-to-BentoML step (``leadscore package``) and serve.
"""
