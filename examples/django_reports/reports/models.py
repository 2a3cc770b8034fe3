from django.db import models


class Report(models.Model):
    """A report someone asked for; ``body`` is empty until it is built."""

    client = models.CharField(max_length=100)
    rows = models.PositiveIntegerField()
    task_id = models.CharField(max_length=64, blank=True)  # the TaskResult id (after)
    body = models.JSONField(null=True)
    created = models.DateTimeField(auto_now_add=True)
