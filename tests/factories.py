"""factory_boy factories and actor helpers for the authorization tables."""

from __future__ import annotations

import factory

from accounts.models import MEMBER, TENANT_ADMIN, PersonalAccessToken, User
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from accounts.tokens import pat_generate
from teams.models import Team, TeamMembership

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    display_name = factory.Sequence(lambda n: f"User {n}")
    tenant_role_id = MEMBER
    password = factory.django.Password(PASSWORD)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"team-{n}")


def tenant_admin(team: Team | None = None) -> User:
    return UserFactory(tenant_role_id=TENANT_ADMIN)


def member() -> User:
    return UserFactory()


def team_member_of(team: Team) -> User:
    user = UserFactory()
    TeamMembership.objects.create(team=team, user=user, role="member")
    return user


def team_manager_of(team: Team) -> User:
    user = UserFactory()
    TeamMembership.objects.create(team=team, user=user, role="manager")
    return user


def team_manager_elsewhere(team: Team) -> User:
    return team_manager_of(TeamFactory())


def outsider(team: Team) -> User:
    return UserFactory()


def principal(user: User) -> Principal:
    return principal_for_user(User.objects.get(pk=user.pk))


def pat_for(user: User, name: str = "test") -> str:
    """A working PAT for `user`; returns the raw token."""
    raw, prefix, digest = pat_generate()
    PersonalAccessToken.objects.create(user=user, name=name, prefix=prefix, digest=digest)
    return raw
