"""Server-rendered pages. Views only call selectors and services."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in user's start page."""
    return render(request, "home.html")
