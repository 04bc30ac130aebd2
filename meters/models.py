"""What every process records about itself, in the database, so that any web process can
answer /metrics, /readyz and the charts for all of them.

Invariants:
- A Meter row is one Prometheus series: (name, labels) is unique, and a counter's value only
  grows. Rows are never deleted while their series can still be scraped, or a counter would
  reset. Labels hold ids (source, trigger), never names: names are joined in at scrape time,
  so a renamed trigger keeps its series.
- A MeterMinute row is the same series cut into UTC minutes, kept for the charts' 24 hours.
  Counters add into it; gauges keep the highest value seen in the minute.
- A Heartbeat row is one running process; seen_at moves every SHARDWATCH_HEARTBEAT_S. A
  worker's queues say whether it is a reader, a worker or both (meters.heartbeats.heartbeat_roles).
"""

from django.db import models
from django.utils import timezone


class Meter(models.Model):
    name = models.CharField(max_length=128)
    labels = models.CharField(max_length=512, blank=True, help_text='Canonical JSON, keys sorted: {"source": "3"}.')
    value = models.FloatField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="meter_series_unique")]

    def __str__(self):
        return f"{self.name}{self.labels}"


class MeterMinute(models.Model):
    name = models.CharField(max_length=128)
    labels = models.CharField(max_length=512, blank=True)
    minute = models.DateTimeField()
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels", "minute"], name="meter_minute_unique")]
        indexes = [models.Index(fields=["minute"], name="meter_minute_at")]


class Heartbeat(models.Model):
    class Role(models.TextChoices):
        WORKER = "worker", "Celery worker"
        BEAT = "beat", "Celery beat"

    process = models.CharField(max_length=255, unique=True, help_text="Celery's hostname (worker@host) and the pid.")
    role = models.CharField(max_length=16, choices=Role.choices)
    queues = models.CharField(max_length=255, blank=True, help_text="The queues a worker consumes, comma-separated.")
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["role", "seen_at"], name="heartbeat_role_seen")]

    def __str__(self):
        return self.process
