"""The lead-scoring core: everything the product knows, with no Feast repo, training loop,
HTTP service or command line in it.

Subpackages import one way, from the top down (enforced by import-linter in CI):

* :mod:`leadscore.priority`: the managers' priority list (rank, health rules, report);
* :mod:`leadscore.model`: the scoring model, explanations, reasons, the MLflow connection;
* :mod:`leadscore.features`: feature rules (kernels), catalog, sources, Feast access;
* :mod:`leadscore.crm`: the CRM export contract, ingest and the synthetic CRM;
* :mod:`leadscore.config`: settings, read from the environment in one place.

``training``, ``serving`` and ``pipelines`` build on this package; it imports none of them.
"""
