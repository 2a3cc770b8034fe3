"""The Django app that brings ``manage.py offload_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class OffloadConfig(AppConfig):  # type: ignore[misc]  # Django is untyped
    name = "offload.integrations.django"
    label = "offload"
    verbose_name = "offload"
