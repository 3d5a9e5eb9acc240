"""Delivery of the notification outbox: email now (and in a daily digest), by Celery workers.

The rows are written by the domain (`identities.services.notifications_record`) in the
transaction that changed the state; this app only sends them and records that it did."""
