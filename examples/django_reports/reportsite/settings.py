"""Settings of the reports site. ``REPORTS_DATA`` is the folder of its two SQLite files (Django's
database and offload's jobs); ``REPORTS_BEFORE=1`` serves the old inline view (before.py)."""

import os
from pathlib import Path

import django

DATA = Path(os.environ.get("REPORTS_DATA", Path(__file__).resolve().parent.parent / "data"))
BEFORE = os.environ.get("REPORTS_BEFORE") == "1"

SECRET_KEY = "example-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "reportsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "offload.integrations.django",  # manage.py offload_worker
    "reports",
    *(["django_tasks"] if django.VERSION < (6, 0) else []),  # the backport before Django 6
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA / "site.db",
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

# The one setting that hands the slow work to offload:
TASKS = {
    "default": {
        "BACKEND": "offload.integrations.django.OffloadBackend",
        "QUEUES": ["reports"],
        "OPTIONS": {"backend": f"sqlite:///{DATA / 'offload.db'}", "retries": 2},
    }
}
