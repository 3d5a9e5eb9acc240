"""Process-level bookkeeping for the portal itself."""

from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time each worker host ran the periodic heartbeat task (shown on /readyz)."""

    hostname = models.CharField(max_length=255, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.seen_at:%Y-%m-%d %H:%M:%S}"
