"""`manage.py scim_token --sso NAME`: issue a SCIM bearer token and print it once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.policy import PolicyDenied, Principal
from gateway_project.errors import GatewayError
from teams.scim_services import MAX_GRACE_DAYS, scim_token_issue


class Command(BaseCommand):
    """Acts as the system; older tokens of the SSO configuration get a grace period."""

    help = "Issue a SCIM token for an SSO configuration; prints only the token."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """--sso and an optional grace period for the previous token."""
        parser.add_argument("--sso", required=True, metavar="NAME", help="SSO configuration")
        parser.add_argument(
            "--grace-days",
            type=int,
            default=1,
            metavar="N",
            help=f"days the previous token keeps working (0-{MAX_GRACE_DAYS}, default 1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the raw token and nothing else, so scripts can capture it."""
        try:
            _token, raw = scim_token_issue(
                actor=Principal.system(),
                sso_name=options["sso"],
                grace_period_days=options["grace_days"],
            )
        except GatewayError as exc:
            raise CommandError(exc.message) from exc
        except PolicyDenied as exc:
            raise CommandError(exc.reason) from exc
        self.stdout.write(raw)
