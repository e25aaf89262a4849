"""`manage.py apply -f FILE|- --dir DIR`: make the gateway match a set of manifests."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from gateway_project import manifests
from gateway_project.manifest_io import ManifestError, format_results, load_documents


class Command(BaseCommand):
    help = "Apply YAML manifests (files, '-' for stdin, or directories) atomically."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-f", "--file", action="append", default=[], dest="files")
        parser.add_argument("--dir", action="append", default=[], dest="dirs")
        parser.add_argument("--dry-run", action="store_true", help="change nothing")
        parser.add_argument("--show-diff", action="store_true", help="print a diff per object")
        parser.add_argument(
            "--sync",
            action="store_true",
            help="delete objects of the applied types created by apply and absent from the set",
        )
        parser.add_argument(
            "--sync-console-objects",
            action="store_true",
            help="with --sync, also delete objects made in the console or API",
        )
        parser.add_argument(
            "--as-user", default="", help="apply with this user's permissions (default: system)"
        )
        parser.add_argument("--output", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["files"] and not options["dirs"]:
            raise CommandError("give -f FILE (or -) and/or --dir DIR")
        actor = self._actor(options["as_user"])
        try:
            docs = load_documents(options["files"], options["dirs"])
            results = manifests.apply(
                docs,
                actor=actor,
                dry_run=options["dry_run"],
                sync=options["sync"],
                sync_console_objects=options["sync_console_objects"],
            )
        except ManifestError as exc:
            raise CommandError("\n".join(str(p) for p in exc.problems)) from exc
        except OSError as exc:
            raise CommandError(str(exc)) from exc
        rows = [r.as_dict(with_diff=options["show_diff"]) for r in results]
        if options["output"] == "json":
            self.stdout.write(json.dumps({"results": rows, "dry_run": options["dry_run"]}))
        else:
            self.stdout.write(
                format_results(rows, show_diff=options["show_diff"], dry_run=options["dry_run"])
            )

    def _actor(self, email: str) -> Principal:
        if not email:
            return Principal.system()
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {email}")
        return principal_for_user(user)
