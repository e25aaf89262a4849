from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        import accounts.secret_store_manifests  # noqa: F401 - registers secret-store kinds
        from accounts import manifests, sso_manifests, va_manifests  # noqa: F401 - registers manifest kinds
