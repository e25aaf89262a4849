"""`manage.py export [--type T] [--dir DIR]`: every object as manifests that apply reproduces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway_project import manifests
from gateway_project.manifest_io import dump_stream, export_files


class Command(BaseCommand):
    help = "Export objects as YAML manifests (to stdout, or one file each under --dir)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--type", action="append", default=[], dest="types")
        parser.add_argument("--dir", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        unknown = set(options["types"]) - set(manifests.kinds())
        if unknown:
            raise CommandError(f"unknown type(s): {', '.join(sorted(unknown))}")
        items = manifests.export(options["types"] or None)
        if options["dir"]:
            written = export_files(
                [(kind.directory, name, m) for kind, name, m in items], Path(options["dir"])
            )
            self.stdout.write(f"wrote {len(written)} file(s) to {options['dir']}")
        else:
            self.stdout.write(dump_stream([m for _, _, m in items]), ending="")
