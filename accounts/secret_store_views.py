"""Console pages for Platform > Settings > Secret stores.

Each view parses input, takes the request's principal and calls one service or selector of
accounts.secret_store_services, which decides (`settings:ListSettings` to see the stores,
`settings:ManageSettings` to change, test or delete them). Credentials are write-only: pages
show identifiers and "•••••• (set)", never a secret, and keep themselves out of caches.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts import secret_store_services as services
from accounts.console import ConsoleView, form_error_apply, no_store, paginate
from accounts.console_yaml import ObjectYamlView, YamlTarget
from accounts.models import SecretStore
from accounts.policy import Permission
from accounts.secret_store_forms import FIELDS, SecretStoreForm, error_aliases
from accounts.secret_store_manifests import TYPE_PREFIX
from accounts.secret_stores import SecretStoreError, secret_store_location
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed

INVALID_FORM = 400
SETTINGS_CRUMBS = (("Platform", ""), ("Settings", ""))
READ = (Permission.SETTINGS_LIST, Permission.SETTINGS_MANAGE)

STORE_STARTER = """\
# A secret store: where virtual-account tokens are written on creation and every rotation.
type: integration/secret-store/hashicorp/vault
name: vault-prod
url: https://vault.example.com:8200
mount: secret
auth_data:
  type: token
  token: REPLACE-ME
"""


ADDRESS_KEYS = ("url", "vault_url", "project", "region")


def store_address(store: SecretStore) -> str:
    """Where the store is, in one short string (its URL, project or region)."""
    config = store.config or {}
    return next((str(config[k]) for k in ADDRESS_KEYS if config.get(k)), "")


def store_page(
    request: HttpRequest, store: SecretStore, *, can_manage: bool, status: int = 200
) -> HttpResponse:
    """A store's settings (credentials masked) and the accounts that use it."""
    public = services.credentials_public(store)
    fields = FIELDS.get(store.kind, [])
    config = store.config or {}
    rows = [
        (spec.label, config[spec.key])
        for spec in fields
        if spec.part == "config" and spec.key in config
    ]
    auth = [
        (spec.label, bool(public.get(spec.key)), "" if spec.secret else public.get(spec.key, ""))
        for spec in fields
        if spec.part == "auth" and (spec.key in public)
    ]
    context = {
        "store": store,
        "config_rows": rows,
        "auth_rows": auth,
        "auth_type": public.get("type", ""),
        "used_by": list(store.accounts.order_by("name").values_list("name", "secret_path")),
        "example_location": secret_store_location(store, "/gateway/my-app"),
        "can_manage": can_manage,
    }
    return no_store(render(request, "accounts/secret_store_detail.html", context, status=status))


class SecretStoreListView(ConsoleView):
    """Every store, with how many virtual accounts use it."""

    policy_permission = READ

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        stores = services.secret_store_list(self.principal).annotate(used_by=Count("accounts"))
        page = paginate(request, stores.order_by("name"))
        context = {
            "page": page,
            "rows": [(store, store_address(store)) for store in page],
            "can_manage": self.principal.holds(Permission.SETTINGS_MANAGE),
        }
        return render(request, "accounts/secret_store_list.html", context)


class SecretStoreCreateView(ConsoleView):
    """A new store of any kind."""

    policy_permission = (Permission.SETTINGS_MANAGE,)
    template_name = "accounts/secret_store_form.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        kind = request.GET.get("kind", "")
        initial = {"kind": kind} if kind in SecretStore.Kind.values else {}
        return self.page(request, SecretStoreForm(initial=initial))

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the store."""
        form = SecretStoreForm(request.POST)
        if form.is_valid() and self.exists(form.cleaned_data["name"].strip()):
            form.add_error("name", "A secret store with this name already exists.")
        if form.is_valid():
            kind = form.chosen_kind
            try:
                store = services.secret_store_put_config(
                    actor=self.principal,
                    name=form.cleaned_data["name"].strip(),
                    kind=kind,
                    config=form.config(),
                    credentials=form.credentials({}),
                    created_via="console",
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc, error_aliases(kind))
            else:
                messages.success(request, f"Created secret store {store.name}.")
                return redirect("accounts:secret_store_detail", name=store.name)
        return self.page(request, form, status=INVALID_FORM)

    def exists(self, name: str) -> bool:
        """Whether the name is taken (secret_store_put_config would change that store)."""
        try:
            services.secret_store_get_for(self.principal, name)
        except ObjectNotFound:
            return False
        return True

    def page(self, request: HttpRequest, form: SecretStoreForm, status: int = 200) -> HttpResponse:
        """The form (never cached: credentials are typed here)."""
        context = {"form": form, "store": None}
        return no_store(render(request, self.template_name, context, status=status))


class SecretStoreDetailView(ConsoleView):
    """One store: settings with credentials masked, and who uses it."""

    policy_permission = READ

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The store page."""
        store = services.secret_store_get_for(self.principal, name)
        can_manage = self.principal.holds(Permission.SETTINGS_MANAGE)
        return store_page(request, store, can_manage=can_manage)


class SecretStoreEditView(ConsoleView):
    """Change a store's settings; a blank secret keeps the stored one."""

    policy_permission = (Permission.SETTINGS_MANAGE,)
    template_name = "accounts/secret_store_form.html"

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The form, filled with the settings (never the secrets)."""
        store = services.secret_store_get_for(self.principal, name)
        form = SecretStoreForm(store=store, public=services.credentials_public(store))
        return self.page(request, form, store)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Save the store."""
        store = services.secret_store_get_for(self.principal, name)
        public = services.credentials_public(store)
        form = SecretStoreForm(request.POST, store=store, public=public)
        if form.is_valid():
            try:
                services.secret_store_put_config(
                    actor=self.principal,
                    name=store.name,
                    kind=store.kind,
                    config=form.config(),
                    credentials=form.credentials(services.credentials_values(store)),
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc, error_aliases(store.kind))
            else:
                messages.success(request, f"Saved secret store {store.name}.")
                return redirect("accounts:secret_store_detail", name=store.name)
        return self.page(request, form, store, status=INVALID_FORM)

    def page(
        self, request: HttpRequest, form: SecretStoreForm, store: SecretStore, status: int = 200
    ) -> HttpResponse:
        """The form (never cached: credentials are typed here)."""
        context = {"form": form, "store": store}
        return no_store(render(request, self.template_name, context, status=status))


class SecretStoreTestView(ConsoleView):
    """Test connection: one cheap authenticated call with the stored settings."""

    http_method_names = ("post",)
    policy_permission = (Permission.SETTINGS_MANAGE,)

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Run the test and flash its answer (store errors are safe to show)."""
        store = services.secret_store_get_for(self.principal, name)
        try:
            message = services.secret_store_test(actor=self.principal, store=store)
        except SecretStoreError as exc:
            messages.error(request, f"Test connection failed: {exc}")
        else:
            messages.success(request, f"Test connection: {message}")
        return redirect("accounts:secret_store_detail", name=store.name)


class SecretStoreDeleteView(ConsoleView):
    """Delete a store no virtual account uses."""

    policy_permission = (Permission.SETTINGS_MANAGE,)

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Ask for confirmation."""
        store = services.secret_store_get_for(self.principal, name)
        return render(request, "accounts/secret_store_delete.html", {"store": store})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete it, or explain who still uses it."""
        store = services.secret_store_get_for(self.principal, name)
        try:
            services.secret_store_delete(actor=self.principal, store=store)
        except Conflict as exc:
            messages.error(request, f"{exc.message}. Move them to another store first.")
            return redirect("accounts:secret_store_detail", name=store.name)
        messages.success(request, f"Deleted secret store {name}.")
        return redirect("accounts:secret_store_list")


class SecretStoreYamlView(ObjectYamlView):
    """A store's manifest (secrets as `gw-secret://` references): view, preview, apply."""

    # Vault first: the starter manifest ("New from YAML") is registered under the first type.
    manifest_types = tuple(
        TYPE_PREFIX + kind
        for kind in sorted(
            SecretStore.Kind.values, key=lambda k: k != SecretStore.Kind.HASHICORP_VAULT
        )
    )
    starter_label = "Secret store"
    starter = STORE_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The store named by the URL, if the principal may read settings."""
        store = services.secret_store_get_for(self.principal, kwargs["name"])
        return YamlTarget(
            manifest_type=TYPE_PREFIX + store.kind,
            name=store.name,
            url=reverse("accounts:secret_store_detail", args=[store.name]),
            can_change=self.principal.holds(Permission.SETTINGS_MANAGE),
            breadcrumbs=(
                *SETTINGS_CRUMBS,
                ("Secret stores", reverse("accounts:secret_store_list")),
            ),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The store's page."""
        return reverse("accounts:secret_store_detail", args=[name])
