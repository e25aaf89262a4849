"""Console routes for Access > Virtual Account Tokens and Platform > Settings > Secret stores.

Included into the `accounts` namespace by accounts/urls.py. "-" is not a valid account or
store name, so "-/new/" can never shadow one. The account page's path is the one
notifications link to (`/access/virtual-accounts/<name>/`).
"""

from django.urls import path

from accounts import secret_store_views as stores
from accounts import va_views as views

VA = "access/virtual-accounts/"
STORES = "settings/secret-stores/"

urlpatterns = [
    path(VA, views.VirtualAccountListView.as_view(), name="virtual_account_list"),
    path(f"{VA}-/new/", views.VirtualAccountCreateView.as_view(), name="virtual_account_create"),
    path(
        f"{VA}<slug:name>/",
        views.VirtualAccountDetailView.as_view(),
        name="virtual_account_detail",
    ),
    path(
        f"{VA}<slug:name>/regenerate/",
        views.VirtualAccountRegenerateView.as_view(),
        name="virtual_account_token_regenerate",
    ),
    path(
        f"{VA}<slug:name>/get-token/",
        views.VirtualAccountGetTokenView.as_view(),
        name="virtual_account_token_get",
    ),
    path(
        f"{VA}<slug:name>/sync/",
        views.VirtualAccountSyncView.as_view(),
        name="virtual_account_sync",
    ),
    path(
        f"{VA}<slug:name>/delete/",
        views.VirtualAccountDeleteView.as_view(),
        name="virtual_account_delete",
    ),
    path(
        f"{VA}<slug:name>/yaml/",
        views.VirtualAccountYamlView.as_view(),
        name="virtual_account_yaml",
    ),
    path(STORES, stores.SecretStoreListView.as_view(), name="secret_store_list"),
    path(f"{STORES}-/new/", stores.SecretStoreCreateView.as_view(), name="secret_store_create"),
    path(
        f"{STORES}<slug:name>/", stores.SecretStoreDetailView.as_view(), name="secret_store_detail"
    ),
    path(
        f"{STORES}<slug:name>/edit/",
        stores.SecretStoreEditView.as_view(),
        name="secret_store_edit",
    ),
    path(
        f"{STORES}<slug:name>/test-connection/",
        stores.SecretStoreTestView.as_view(),
        name="secret_store_test",
    ),
    path(
        f"{STORES}<slug:name>/delete/",
        stores.SecretStoreDeleteView.as_view(),
        name="secret_store_delete",
    ),
    path(
        f"{STORES}<slug:name>/yaml/", stores.SecretStoreYamlView.as_view(), name="secret_store_yaml"
    ),
]
