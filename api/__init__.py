"""The REST API under /api/v1/ (DRF): one view per operation, calling selectors and services.

Authentication is a session (the web UI) or an API token (pipelines, `accounts.authentication`);
errors are RFC 9457 problem details (`problems`); POSTs honour `Idempotency-Key`
(`idempotency`); lists use cursor pagination with django-filter filters.
"""
