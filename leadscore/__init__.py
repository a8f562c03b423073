"""Lead scoring domain library: contract, ingest, synthetic CRM, features, model."""
