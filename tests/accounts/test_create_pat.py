"""`manage.py create_pat`: prints exactly one working token, or a clear error."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import PersonalAccessToken, User
from accounts.selectors import pat_authenticate
from tests import factories


def create_pat(*args: str) -> str:
    out = StringIO()
    call_command("create_pat", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_pat_prints_only_a_token_that_authenticates() -> None:
    user = factories.UserFactory(email="dev@example.com")

    output = create_pat("--user", "dev@example.com", "--name", "ci")

    assert re.fullmatch(r"gw_pat_[A-Za-z0-9]{40}\n", output)
    token = pat_authenticate(output.rstrip("\n"))
    assert token is not None
    assert token.user == user
    assert token.name == "ci"
    assert token.expires_at is None


@pytest.mark.django_db
def test_create_pat_matches_the_email_in_any_case() -> None:
    user = factories.UserFactory(email="dev@example.com")

    output = create_pat("--user", "  DEV@Example.com ", "--name", "ci")

    token = pat_authenticate(output.strip())
    assert token is not None
    assert token.user == user


@pytest.mark.django_db
def test_create_pat_sets_the_expiry() -> None:
    user = factories.UserFactory()
    before = timezone.now()

    create_pat("--user", user.email, "--name", "ci", "--expires-in-days", "7")

    token = PersonalAccessToken.objects.get(user=user)
    assert token.expires_at is not None
    assert before + timedelta(days=7) <= token.expires_at <= timezone.now() + timedelta(days=7)


@pytest.mark.django_db
def test_create_pat_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError, match=r"^no user with email 'nobody@example.com'$"):
        create_pat("--user", "nobody@example.com", "--name", "ci")

    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
def test_create_pat_refuses_an_inactive_user() -> None:
    user = factories.UserFactory(email="gone@example.com", is_active=False)

    with pytest.raises(CommandError, match=r"^user gone@example.com is inactive$"):
        create_pat("--user", user.email, "--name", "ci")

    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
def test_create_pat_refuses_a_duplicate_name() -> None:
    user = factories.UserFactory()
    first = create_pat("--user", user.email, "--name", "ci")

    with pytest.raises(CommandError, match=r"^you already have an active token named 'ci'$"):
        create_pat("--user", user.email, "--name", "ci")

    assert list(PersonalAccessToken.objects.values_list("name", flat=True)) == ["ci"]
    assert pat_authenticate(first.strip()) is not None


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
def test_create_pat_refuses_a_bad_name(name: str) -> None:
    user = factories.UserFactory()

    with pytest.raises(CommandError, match=r"^name: 1-64 characters required$"):
        create_pat("--user", user.email, "--name", name)

    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "-3"])
def test_create_pat_refuses_a_non_positive_lifetime(days: str) -> None:
    user = factories.UserFactory()

    with pytest.raises(CommandError, match=r"^--expires-in-days must be at least 1$"):
        create_pat("--user", user.email, "--name", "ci", "--expires-in-days", days)

    assert PersonalAccessToken.objects.count() == 0
    assert User.objects.get(pk=user.pk).is_active
