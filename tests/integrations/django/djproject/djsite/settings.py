"""A small Django project on offload: Django's database and offload's backend come from the
environment (SHOP_DB, SHOP_OFFLOAD), so tests and the worker process they start share them."""

import os
import tempfile
from pathlib import Path

import django

_TMP = Path(tempfile.gettempdir())

SECRET_KEY = "offload-tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
ROOT_URLCONF = "djsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "offload.integrations.django",
    "shop",
    # before Django 6, django.tasks is the django-tasks backport
    *(["django_tasks"] if django.VERSION < (6, 0) else []),
]
TASKS_MODULE = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(_TMP / "shop-django.db")),
    }
}
TASKS = {
    "default": {
        "BACKEND": "offload.integrations.django.OffloadBackend",
        "QUEUES": ["default", "reports"],
        # SHOP_OFFLOAD_APP: use that offload App (and its own tasks) instead of a bare URL
        "OPTIONS": {"app": os.environ["SHOP_OFFLOAD_APP"]}
        if os.environ.get("SHOP_OFFLOAD_APP")
        else {"backend": os.environ.get("SHOP_OFFLOAD", f"sqlite:///{_TMP}/shop-jobs.db")},
    },
    "inline": {"BACKEND": f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"},
}
