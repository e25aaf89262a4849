from django.apps import AppConfig


class DataaccessConfig(AppConfig):
    name = "dataaccess"
