"""`manage.py create_pat`: mint a personal access token for a user and print it once."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import User
from accounts.policy import PolicyDenied
from accounts.selectors import principal_for_user
from accounts.services import pat_create
from gateway_project.errors import GatewayError


class Command(BaseCommand):
    """Acts as the user: PATs are created by their owner only (see `pat_create`)."""

    help = "Create a personal access token for a user; prints only the token."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--user, --name and an optional lifetime."""
        parser.add_argument("--user", required=True, metavar="EMAIL", help="the token's owner")
        parser.add_argument("--name", required=True, help="a name unique among the user's tokens")
        parser.add_argument(
            "--expires-in-days",
            type=int,
            default=None,
            metavar="N",
            help="lifetime in days (default: no expiry)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the raw token and nothing else, so scripts can capture it."""
        user = _active_user(options["user"])
        expires_at = None
        days = options["expires_in_days"]
        if days is not None:
            if days < 1:
                raise CommandError("--expires-in-days must be at least 1")
            expires_at = timezone.now() + timedelta(days=days)
        try:
            _token, raw = pat_create(
                actor=principal_for_user(user),
                user=user,
                name=options["name"],
                expires_at=expires_at,
            )
        except GatewayError as exc:
            raise CommandError(exc.message) from exc
        except PolicyDenied as exc:
            raise CommandError(exc.reason) from exc
        self.stdout.write(raw)


def _active_user(email: str) -> User:
    """The active user with this email (any case), or CommandError."""
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise CommandError(f"no user with email {email!r}")
    if not user.is_active:
        raise CommandError(f"user {user.email} is inactive")
    return user
