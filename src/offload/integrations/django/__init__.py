"""offload for Django: a backend of Django's tasks framework and ``manage.py offload_worker``.

Add ``"offload.integrations.django"`` to ``INSTALLED_APPS`` (for the worker command) and
``"offload.integrations.django.OffloadBackend"`` to ``TASKS``; see docs/guide/django.md.
Works with ``django.tasks`` (Django >= 6.0) and with the ``django-tasks`` backport before that.
"""

from __future__ import annotations

from offload.integrations.django.backend import OffloadBackend

__all__ = ["OffloadBackend"]
