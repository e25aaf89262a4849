from django.apps import AppConfig


class DataaccessConfig(AppConfig):
    name = "dataaccess"

    def ready(self) -> None:
        from dataaccess import manifests  # noqa: F401 - registers the manifest kind
