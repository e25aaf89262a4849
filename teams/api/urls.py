from django.urls import path

from teams.api import views

app_name = "teams-api"

urlpatterns = [
    path("teams", views.TeamListApi.as_view(), name="team_list"),
    path("teams/<str:name>", views.TeamDetailApi.as_view(), name="team_detail"),
    path("teams/<str:name>/members", views.TeamMembershipApi.as_view(), name="team_members"),
    path(
        "teams/<str:name>/members/<str:email>",
        views.TeamMembershipDetailApi.as_view(),
        name="team_member_detail",
    ),
]
