"""Gateway: a self-hosted AI gateway with an organisation-governance control plane."""

from gateway_project.celery import app as celery_app

__all__ = ["celery_app"]
