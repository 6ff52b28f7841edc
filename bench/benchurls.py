"""The product's URLs and one trivial JSON view, for bench/benchsite.py."""

from django.http import JsonResponse
from django.urls import path

from server.urls import urlpatterns as product_urlpatterns


def trivial(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/trivial/", trivial, name="bench-trivial"), *product_urlpatterns]
