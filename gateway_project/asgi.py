"""ASGI entry point: the proxy's hot paths go to a lean app, everything else to Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

django_application = get_asgi_application()  # sets Django up before the proxy imports models

from proxy.app import GatewayApplication  # noqa: E402

application = GatewayApplication(django_application)
