"""Web UI routes."""

from django.urls import path

from identities import views

urlpatterns = [
    path("", views.home, name="home"),
]
