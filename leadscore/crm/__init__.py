"""The CRM side: what an export must look like, how it is validated and stored, and a
synthetic CRM to test with.

* :mod:`~leadscore.crm.contract`: tables and columns of the export (``leadscore contract``);
* :mod:`~leadscore.crm.ingest`: validation with named rejects, upsert into stored tables;
* :mod:`~leadscore.crm.synth`: the synthetic CRM with the generator's own truth.
"""
