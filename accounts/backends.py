"""Password login by email; inactive users are refused here and on every later request."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend


class EmailBackend(ModelBackend):
    """ModelBackend already refuses inactive users in authenticate() and get_user(): a
    deactivated user's existing sessions stop working on their next request."""
