from django.conf import settings
from django.urls import path

from reports import before, views

urlpatterns = [
    path("health", views.health),
    path("reports", before.create_report if settings.BEFORE else views.create_report),
    path("reports/<int:report_id>", views.report_status),
]
