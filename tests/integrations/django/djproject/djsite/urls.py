from django.urls import path
from shop import views

urlpatterns = [
    path("orders/<int:order>/receipt", views.send_receipt),
    path("results/<str:result_id>", views.status),
]
