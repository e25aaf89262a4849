"""Bench only: a trivial async Django view behind Django's own ASGI handler.

Why the proxy is a lean ASGI app in front of Django rather than a plain `async def` Django view
(or adrf, whose APIView adds DRF's request/response/negotiation layers on top of that):
`proxy_bench.py --compare-django` serves this module with the same uvicorn options as
`gateway serve` and measures it at 16 connections next to the proxy (README "Benchmark").

The view does the least a model endpoint must do: parse the JSON body and answer a small JSON
object; no auth, no upstream call, no log. `BENCH_DJANGO_MIDDLEWARE=none` drops the project's
middleware to show the floor of Django's request handling alone.
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
django.setup(set_prefix=False)  # what get_asgi_application() does, then the handler below
settings.ROOT_URLCONF = __name__
if os.environ.get("BENCH_DJANGO_MIDDLEWARE") == "none":
    settings.MIDDLEWARE = []  # after setup: allauth's ready() insists on its middleware


@csrf_exempt
async def completions(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    return JsonResponse(
        {"id": "bench", "object": "chat.completion", "model": body.get("model"), "choices": []}
    )


urlpatterns = [path("v1/chat/completions", completions)]

application = ASGIHandler()
