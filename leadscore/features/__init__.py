"""Deal features as of any moment: one definition for training and serving.

* :mod:`~leadscore.features.catalog`: every feature, its view, kind and policy;
* :mod:`~leadscore.features.seniority`: contact seniority from English and Chinese titles;
* :mod:`~leadscore.features.deal_state`: the feature rules, as numba kernels;
* :mod:`~leadscore.features.featurize`: Feast source rows from stored CRM tables;
* :mod:`~leadscore.features.store`: the Feast repo's store: apply, materialize, frames.
"""
