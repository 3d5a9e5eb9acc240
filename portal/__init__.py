"""The Django project: settings, URLs, the Celery app, authentication and health endpoints."""

from portal.celery import app as celery_app

__all__ = ["celery_app"]
