"""Console routes for teams."""

from django.urls import path

from teams import views

app_name = "teams"
urlpatterns = [
    path("teams/", views.TeamListView.as_view(), name="team_list"),
    path("teams/new/", views.TeamCreateView.as_view(), name="team_create"),
    path("teams/<int:pk>/", views.TeamDetailView.as_view(), name="team_detail"),
    path("teams/<int:pk>/update/", views.TeamUpdateView.as_view(), name="team_update"),
    path("teams/<int:pk>/members/add/", views.TeamMemberAddView.as_view(), name="team_member_add"),
    path(
        "teams/<int:pk>/members/remove/",
        views.TeamMemberRemoveView.as_view(),
        name="team_member_remove",
    ),
    path("teams/<int:pk>/delete/", views.TeamDeleteView.as_view(), name="team_delete"),
    path("teams/<int:pk>/yaml/", views.TeamYamlView.as_view(), name="team_yaml"),
]
