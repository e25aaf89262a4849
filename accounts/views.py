"""Console pages: sign-in, invitations, users, roles, role bindings, tokens and the audit log.

Each view parses input, takes the request's principal, calls one service or selector and
renders; the services decide what is allowed (accounts.console maps their errors).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from accounts import selectors, services
from accounts.console import (
    ConsoleView,
    console_user,
    form_error_apply,
    no_store,
    paginate,
    sort_param,
)
from accounts.console_yaml import ObjectYamlView, YamlTarget
from accounts.forms import (
    TARGET_TYPES,
    AuditFilterForm,
    InvitationAcceptForm,
    LoginForm,
    PatCreateForm,
    RoleBindingForm,
    RoleCreateForm,
    RoleEditForm,
    UserInviteForm,
    UserUpdateForm,
    available_permissions,
    permission_groups,
)
from accounts.models import MEMBER, Role, RoleBinding, User
from accounts.policy import Permission, Principal, holds_any
from accounts.selectors import UserDetail
from gateway_project.errors import Conflict, ObjectNotFound, ValidationFailed

INVALID_FORM = 400
USER_SORTS = {
    "email": "email",
    "display_name": "display_name",
    "role": "tenant_role__display_name",
    "joined": "date_joined",
}
AUDIT_PAGE_SIZE = 50
EMAIL_BACKEND = "accounts.backends.EmailBackend"


# --- sign-in and invitations -------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Email and password sign-in (the template keeps a `sso` block for the SSO button)."""

    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class InvitationAcceptView(View):
    """An invited user sets their password through the one-time link, then is signed in."""

    template_name = "accounts/invitation_accept.html"

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        """The set-password form, or an explanation when the link is spent or expired."""
        try:
            invitation = services.invitation_find(token)
        except ObjectNotFound:
            return self.invalid(request)
        return self.page(request, InvitationAcceptForm(), invitation.user)

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        """Set the password, spend the link and start a session."""
        form = InvitationAcceptForm(request.POST)
        if form.is_valid():
            try:
                user = services.invitation_accept(
                    raw=token, password=form.cleaned_data["password1"]
                )
            except ObjectNotFound:
                return self.invalid(request)
            except ValidationFailed as exc:
                form_error_apply(form, exc, {"password": "password1"})
            else:
                login(request, user, backend=EMAIL_BACKEND)
                messages.success(request, "Welcome! Your password is set.")
                return redirect("home")
        try:
            invitation = services.invitation_find(token)
        except ObjectNotFound:
            return self.invalid(request)
        return self.page(request, form, invitation.user, status=INVALID_FORM)

    def page(
        self, request: HttpRequest, form: InvitationAcceptForm, user: User, status: int = 200
    ) -> HttpResponse:
        """The form page; the link's token stays out of caches and referrers."""
        context = {"form": form, "invited": user}
        return no_store(render(request, self.template_name, context, status=status))

    def invalid(self, request: HttpRequest) -> HttpResponse:
        """One answer for unknown, spent and expired links."""
        return no_store(render(request, "accounts/invitation_invalid.html", status=404))


# --- users -------------------------------------------------------------------------------


class UserListView(ConsoleView):
    """Users with search, sorting and pages."""

    policy_permission = (Permission.USER_LIST, Permission.USER_MANAGE)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        search = request.GET.get("q", "").strip()
        sort, ordering = sort_param(request, USER_SORTS, "email")
        users = selectors.user_list(self.principal, search=search, ordering=ordering)
        context = {
            "page": paginate(request, users),
            "q": search,
            "sort": sort,
            "can_invite": self.principal.holds(Permission.USER_MANAGE),
        }
        return render(request, "accounts/user_list.html", context)


class UserInviteView(ConsoleView):
    """Invite a user; the one-time link is shown once unless it was emailed."""

    policy_permission = (Permission.USER_MANAGE,)
    template_name = "accounts/user_invite.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The invitation form."""
        roles = selectors.assignable_tenant_roles(self.principal)
        form = UserInviteForm(roles=roles, initial={"tenant_role": MEMBER})
        return render(request, self.template_name, {"form": form})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the user and show the link (never stored, never in a URL)."""
        form = UserInviteForm(request.POST, roles=selectors.assignable_tenant_roles(self.principal))
        if form.is_valid():
            try:
                result = services.user_invite(
                    actor=self.principal,
                    email=form.cleaned_data["email"],
                    display_name=form.cleaned_data["display_name"],
                    tenant_role=form.cleaned_data["tenant_role"],
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                return invite_result_page(request, result)
        return render(request, self.template_name, {"form": form}, status=INVALID_FORM)


def invite_result_page(request: HttpRequest, result: services.InviteResult) -> HttpResponse:
    """The page that shows an invitation link once (or says it was emailed)."""
    response = render(request, "accounts/user_invite_done.html", {"result": result})
    return no_store(response)


def user_update_form(principal: Principal, user: User, data: Any = None) -> UserUpdateForm | None:
    """The edit form with only the fields `principal` may change about `user` (None: none)."""
    is_self = principal.kind == "user" and principal.id == user.pk
    may_rename = is_self or principal.holds(Permission.USER_MANAGE)
    may_assign = principal.holds(Permission.TENANT_ASSIGN_ROLE) and (
        principal.is_tenant_admin or not user.is_tenant_admin
    )
    if not (may_rename or may_assign):
        return None
    roles = selectors.assignable_tenant_roles(principal) if may_assign else []
    if may_assign and user.tenant_role not in roles:
        roles.insert(0, user.tenant_role)
    initial = {"display_name": user.display_name, "tenant_role": user.tenant_role_id}
    form = UserUpdateForm(data, roles=roles, initial=initial)
    if not may_rename:
        del form.fields["display_name"]
    if not may_assign:
        del form.fields["tenant_role"]
    return form


def user_detail_page(
    request: HttpRequest,
    principal: Principal,
    detail: UserDetail,
    form: UserUpdateForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """A user's profile, teams, tokens and the controls `principal` may use."""
    user = detail.user
    context = {
        "detail": detail,
        "subject_user": user,
        "form": form or user_update_form(principal, user),
        "can_manage": principal.holds(Permission.USER_MANAGE),
        "can_list": holds_any(principal, Permission.USER_LIST, Permission.USER_MANAGE),
        "is_self": principal.kind == "user" and principal.id == user.pk,
        "invited": user.is_active and not user.has_usable_password(),
    }
    return render(request, "accounts/user_detail.html", context, status=status)


class UserDetailView(ConsoleView):
    """One user: yourself, or anyone if you may list users."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The profile page."""
        detail = selectors.user_detail_get_for(self.principal, pk)
        return user_detail_page(request, self.principal, detail)


class UserUpdateView(ConsoleView):
    """Change a user's display name and tenant role."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Apply the edit form."""
        detail = selectors.user_detail_get_for(self.principal, pk)
        form = user_update_form(self.principal, detail.user, request.POST)
        if form is None:
            return redirect("accounts:user_detail", pk=pk)
        if form.is_valid():
            try:
                services.user_update(
                    actor=self.principal,
                    user=detail.user,
                    display_name=form.cleaned_data.get("display_name"),
                    tenant_role=form.cleaned_data.get("tenant_role") or None,
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                messages.success(request, f"Saved {detail.user.email}.")
                return redirect("accounts:user_detail", pk=pk)
        return user_detail_page(request, self.principal, detail, form, status=INVALID_FORM)


class UserSetActiveView(ConsoleView):
    """Deactivate (ends sessions and tokens) or reactivate a user."""

    http_method_names = ("post",)
    policy_permission = (Permission.USER_MANAGE,)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """`active=1` reactivates, `active=0` deactivates."""
        user = selectors.user_get_for(self.principal, pk)
        active = request.POST.get("active") == "1"
        try:
            services.user_set_active(actor=self.principal, user=user, active=active)
        except Conflict as exc:
            messages.error(request, exc.message)
        else:
            verb = "reactivated" if active else "deactivated"
            messages.success(request, f"{user.email} is {verb}.")
        return redirect("accounts:user_detail", pk=pk)


class UserInvitationResendView(ConsoleView):
    """A fresh invitation link for a user who has not set a password yet."""

    http_method_names = ("post",)
    policy_permission = (Permission.USER_MANAGE,)

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Issue the link and show it once."""
        user = selectors.user_get_for(self.principal, pk)
        try:
            result = services.user_invitation_resend(actor=self.principal, user=user)
        except Conflict as exc:
            messages.error(request, exc.message)
            return redirect("accounts:user_detail", pk=pk)
        return invite_result_page(request, result)


# --- roles -------------------------------------------------------------------------------


class RoleListView(ConsoleView):
    """Built-in and custom roles with their permissions."""

    policy_permission = (Permission.ROLE_LIST, Permission.ROLE_MANAGE)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        context = {
            "roles": selectors.role_list(self.principal),
            "can_manage": self.principal.holds(Permission.ROLE_MANAGE),
            "all_count": len(available_permissions(Role.ResourceType.TENANT)),
        }
        return render(request, "accounts/role_list.html", context)


class RoleDetailView(ConsoleView):
    """One role and its permissions, grouped by resource type."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        """The role page."""
        role = selectors.role_get_for(self.principal, slug)
        granted = set(role.permissions)
        held = [p for p in Permission if p.value in granted]
        can_manage = self.principal.holds(Permission.ROLE_MANAGE)
        context = {
            "role": role,
            "groups": permission_groups(held, role.permissions),
            "can_edit": can_manage and role.editable,
            "can_delete": can_manage and not role.builtin,
        }
        return render(request, "accounts/role_detail.html", context)


class RoleCreateView(ConsoleView):
    """A custom role (never with permissions the creator lacks: the service refuses)."""

    policy_permission = (Permission.ROLE_MANAGE,)
    template_name = "accounts/role_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        return render(request, self.template_name, {"form": RoleCreateForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the role."""
        form = RoleCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                role = services.role_create(
                    actor=self.principal,
                    slug=data["slug"].strip(),
                    display_name=data["display_name"],
                    description=data["description"],
                    resource_type=data["resource_type"],
                    permissions=data["permissions"],
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc, {"name": "slug", "resourceType": "resource_type"})
            else:
                messages.success(request, f"Created role {role.slug}.")
                return redirect("accounts:role_detail", slug=role.slug)
        return render(request, self.template_name, {"form": form}, status=INVALID_FORM)


class RoleEditView(ConsoleView):
    """Edit a custom role or the built-in Team Manager role; fixed roles are read-only."""

    policy_permission = (Permission.ROLE_MANAGE,)
    template_name = "accounts/role_edit.html"

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        """The form, filled with the role."""
        role = selectors.role_get_for(self.principal, slug)
        if not role.editable:
            messages.info(request, f"The built-in role {role.display_name} cannot be edited.")
            return redirect("accounts:role_detail", slug=role.slug)
        initial = {
            "display_name": role.display_name,
            "description": role.description,
            "permissions": list(role.permissions),
        }
        form = RoleEditForm(initial=initial, resource_type=role.resource_type)
        return render(request, self.template_name, {"form": form, "role": role})

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        """Save the role."""
        role = selectors.role_get_for(self.principal, slug)
        form = RoleEditForm(request.POST, resource_type=role.resource_type)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.role_update(
                    actor=self.principal,
                    role=role,
                    display_name=data["display_name"],
                    description=data["description"],
                    permissions=data["permissions"],
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc)
            else:
                messages.success(request, f"Saved role {role.slug}.")
                return redirect("accounts:role_detail", slug=role.slug)
        context = {"form": form, "role": role}
        return render(request, self.template_name, context, status=INVALID_FORM)


class RoleDeleteView(ConsoleView):
    """Delete a custom role nobody holds."""

    policy_permission = (Permission.ROLE_MANAGE,)

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        """Ask for confirmation."""
        role = selectors.role_get_for(self.principal, slug)
        return render(request, "accounts/role_delete.html", {"role": role})

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        """Delete the role."""
        role = selectors.role_get_for(self.principal, slug)
        try:
            services.role_delete(actor=self.principal, role=role)
        except Conflict as exc:
            messages.error(request, exc.message)
            return redirect("accounts:role_detail", slug=role.slug)
        messages.success(request, f"Deleted role {slug}.")
        return redirect("accounts:role_list")


# --- role bindings -----------------------------------------------------------------------

BINDING_ALIASES = {"permissions": "grants"}


class RoleBindingListView(ConsoleView):
    """Role bindings: who holds which role where."""

    policy_permission = (Permission.ROLE_LIST, Permission.ROLE_MANAGE)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        context = {
            "page": paginate(request, selectors.role_binding_list(self.principal)),
            "can_manage": self.principal.holds(Permission.ROLE_MANAGE),
        }
        return render(request, "accounts/role_binding_list.html", context)


def binding_initial(binding: RoleBinding) -> dict[str, str]:
    """A binding as form text, lines sorted (uses the prefetched subjects and grants)."""
    grants = (f"{g.resource_type}:{g.resource_fqn}:{g.role.slug}" for g in binding.grants.all())
    return {
        "name": binding.name,
        "description": binding.description,
        "subjects": "\n".join(sorted(s.subject for s in binding.subjects.all())),
        "grants": "\n".join(sorted(grants)),
    }


def binding_save(
    principal: Principal, form: RoleBindingForm, name: str
) -> tuple[RoleBinding, bool] | None:
    """Put the binding from a valid form; None (with the errors on the form) on failure."""
    data = form.cleaned_data
    try:
        return services.role_binding_put(
            actor=principal,
            name=name,
            subjects=data["subjects"],
            grants=data["grants"],
            description=data["description"],
        )
    except (ValidationFailed, Conflict) as exc:
        form_error_apply(form, exc, BINDING_ALIASES)
        return None


class RoleBindingCreateView(ConsoleView):
    """A new role binding."""

    policy_permission = (Permission.ROLE_MANAGE,)
    template_name = "accounts/role_binding_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        return render(request, self.template_name, {"form": RoleBindingForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the binding (never replacing one of the same name)."""
        form = RoleBindingForm(request.POST)
        if form.is_valid():
            name = form.cleaned_data["name"]
            if self.exists(name):
                form.add_error("name", f"A role binding named '{name}' already exists.")
            elif binding_save(self.principal, form, name) is not None:
                messages.success(request, f"Created role binding {name}.")
                return redirect("accounts:role_binding_list")
        return render(request, self.template_name, {"form": form}, status=INVALID_FORM)

    def exists(self, name: str) -> bool:
        """Whether the name is taken (role_binding_put would replace it)."""
        try:
            selectors.role_binding_get_for(self.principal, name)
        except ObjectNotFound:
            return False
        return True


class RoleBindingEditView(ConsoleView):
    """Replace a binding's subjects and grants."""

    policy_permission = (Permission.ROLE_MANAGE,)
    template_name = "accounts/role_binding_edit.html"

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """The form, filled with the binding."""
        binding = selectors.role_binding_get_for(self.principal, name)
        form = RoleBindingForm(initial=binding_initial(binding), fixed_name=True)
        return render(request, self.template_name, {"form": form, "binding": binding})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Save the binding."""
        binding = selectors.role_binding_get_for(self.principal, name)
        form = RoleBindingForm(request.POST, initial={"name": binding.name}, fixed_name=True)
        if form.is_valid() and binding_save(self.principal, form, binding.name) is not None:
            messages.success(request, f"Saved role binding {binding.name}.")
            return redirect("accounts:role_binding_list")
        context = {"form": form, "binding": binding}
        return render(request, self.template_name, context, status=INVALID_FORM)


class RoleBindingDeleteView(ConsoleView):
    """Remove a role binding."""

    policy_permission = (Permission.ROLE_MANAGE,)

    def get(self, request: HttpRequest, name: str) -> HttpResponse:
        """Ask for confirmation."""
        binding = selectors.role_binding_get_for(self.principal, name)
        return render(request, "accounts/role_binding_delete.html", {"binding": binding})

    def post(self, request: HttpRequest, name: str) -> HttpResponse:
        """Delete the binding."""
        binding = selectors.role_binding_get_for(self.principal, name)
        services.role_binding_delete(actor=self.principal, binding=binding)
        messages.success(request, f"Deleted role binding {name}.")
        return redirect("accounts:role_binding_list")


# --- personal access tokens --------------------------------------------------------------


class PatListView(ConsoleView):
    """Your tokens; every user's for those who manage users (`?all=1`)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page (prefixes only: raw tokens are never stored)."""
        can_see_all = self.principal.holds(Permission.USER_MANAGE)
        all_users = can_see_all and request.GET.get("all") == "1"
        tokens = selectors.pat_list(self.principal, all_users=all_users)
        context = {
            "page": paginate(request, tokens),
            "all_users": all_users,
            "can_see_all": can_see_all,
        }
        return render(request, "accounts/pat_list.html", context)


class PatCreateView(ConsoleView):
    """Create a token for yourself; the raw token is rendered once, in this response only."""

    template_name = "accounts/pat_create.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The empty form."""
        return render(request, self.template_name, {"form": PatCreateForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        """Create the token and show it (no redirect: it must not reach a URL or session)."""
        form = PatCreateForm(request.POST)
        if form.is_valid():
            try:
                token, raw = services.pat_create(
                    actor=self.principal,
                    user=console_user(request),
                    name=form.cleaned_data["name"],
                    expires_at=form.expires_at(),
                )
            except (ValidationFailed, Conflict) as exc:
                form_error_apply(form, exc, {"expires_at": "expiry"})
            else:
                context = {"token": token, "raw_token": raw}
                return no_store(render(request, "accounts/pat_create_done.html", context))
        return render(request, self.template_name, {"form": form}, status=INVALID_FORM)


class PatRevokeView(ConsoleView):
    """Revoke a token: your own, or anyone's if you manage users."""

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Ask for confirmation."""
        token = selectors.pat_get_for(self.principal, pk)
        return render(request, "accounts/pat_revoke.html", {"token": token})

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Revoke it."""
        token = selectors.pat_get_for(self.principal, pk)
        services.pat_revoke(actor=self.principal, token=token)
        messages.success(request, f"Revoked token {token.name}.")
        url = reverse("accounts:pat_list")
        own = self.principal.kind == "user" and token.user_id == self.principal.id
        return redirect(url if own else f"{url}?all=1")


# --- audit log ---------------------------------------------------------------------------


class AuditListView(ConsoleView):
    """The audit log, newest first, with filters."""

    policy_permission = (Permission.SETTINGS_LIST,)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The list page."""
        form = AuditFilterForm(request.GET)
        events = selectors.audit_event_list(self.principal, **form.filters())
        context = {
            "form": form,
            "page": paginate(request, events, AUDIT_PAGE_SIZE),
            "target_types": TARGET_TYPES,
            "filtered": bool(form.filters()),
        }
        return render(request, "accounts/audit_list.html", context)


class AuditDetailView(ConsoleView):
    """One audit event with its before/after state (secrets already masked)."""

    policy_permission = (Permission.SETTINGS_LIST,)

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The event page."""
        event = selectors.audit_event_get_for(self.principal, pk)
        return render(request, "accounts/audit_detail.html", {"event": event})


# --- apply using YAML --------------------------------------------------------------------

ROLE_STARTER = """\
# A custom role: a named set of permissions, granted to users and teams by role bindings.
type: role
name: my-role
displayName: My role
description: What holders of this role may do.
resourceType: tenant
permissions:
  - team:ReadTeam
"""

ROLE_BINDING_STARTER = """\
# A role binding: gives its subjects a role, tenant-wide or on one team.
type: role-binding
name: my-binding
description: Why these subjects hold this role.
subjects:
  - type: user
    name: {email}
permissions:
  - resourceType: tenant
    resourceFqn: tenant
    role: my-role
"""

ACCESS_CRUMBS = (("Access", ""),)


class RoleYamlView(ObjectYamlView):
    """A role's manifest: view it, preview and apply changes (editable roles only)."""

    manifest_types = ("role",)
    starter_label = "Role"
    starter = ROLE_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The role named by the URL, if the principal may list roles."""
        role = selectors.role_get_for(self.principal, kwargs["slug"])
        return YamlTarget(
            manifest_type="role",
            name=role.slug,
            url=reverse("accounts:role_detail", args=[role.slug]),
            can_change=self.principal.holds(Permission.ROLE_MANAGE) and role.editable,
            breadcrumbs=(*ACCESS_CRUMBS, ("Roles", reverse("accounts:role_list"))),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The role page."""
        return reverse("accounts:role_detail", args=[name])


class RoleBindingYamlView(ObjectYamlView):
    """A role binding's manifest: view it, preview and apply changes."""

    manifest_types = ("role-binding",)
    starter_label = "Role binding"
    starter = ROLE_BINDING_STARTER

    def target(self, **kwargs: Any) -> YamlTarget:
        """The binding named by the URL, if the principal may list roles."""
        binding = selectors.role_binding_get_for(self.principal, kwargs["name"])
        can_manage = self.principal.holds(Permission.ROLE_MANAGE)
        listing = reverse("accounts:role_binding_list")
        return YamlTarget(
            manifest_type="role-binding",
            name=binding.name,
            url=reverse("accounts:role_binding_edit", args=[binding.name])
            if can_manage
            else listing,
            can_change=can_manage,
            breadcrumbs=(*ACCESS_CRUMBS, ("Role bindings", listing)),
        )

    @classmethod
    def url_for_name(cls, name: str) -> str | None:
        """The binding's edit page."""
        return reverse("accounts:role_binding_edit", args=[name])
