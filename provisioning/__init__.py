"""Side effects: the Azure and Kubernetes gateways, the reconcile engine, Celery tasks."""
