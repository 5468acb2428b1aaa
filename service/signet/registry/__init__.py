"""The generation registry: what Signet generated, per tenant, kept for provenance search."""
