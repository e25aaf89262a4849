"""Console pages: Monitor > Requests and Metrics, Controls > Data Access.

Monitor pages need a signed-in user; the Data Access rules decide what they show (the
selectors apply them). Controls > Data Access needs gateway-controls:ListGatewayControls to
read and ManageGatewayControls to edit or preview, and the service checks again on save.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.console import ConsoleView, no_store
from accounts.policy import Permission
from dataaccess import charts, metrics, params, selectors, services, traces
from dataaccess.forms import RuleFormSet, formset_errors_apply, formset_rules, rule_initial
from dataaccess.models import DataAccessConfig, JobState
from dataaccess.selectors import AccessPreview
from gateway_project.errors import ObjectNotFound, ValidationFailed
from gateway_project.manifest_io import dump_yaml
from providers.selectors import provider_account_list
from teams.selectors import team_list

INVALID_FORM = 400
_LINE = re.compile(r"\(line (\d+)\)")
BODY_DISPLAY_LIMIT = 200_000
REQUEST_FILTERS = (
    "range",
    "start",
    "end",
    "model",
    "provider_account",
    "user",
    "virtual_account",
    "team",
    "status",
    "metadata_key",
    "metadata_value",
    "error_type",
)
MCP_FILTERS = (
    "range",
    "start",
    "end",
    "server",
    "tool",
    "user",
    "virtual_account",
    "team",
    "status",
)
RANGE_CHOICES = [("", "Any time"), *[(k, f"Last {k}") for k in params.RANGES], ("custom", "Custom")]
METRIC_RANGES = [*params.RANGES, "custom"]
GROUP_LABELS = {
    "model": "Model",
    "provider_account": "Provider account",
    "user": "User",
    "virtual_account": "Virtual account",
    "team": "Team",
    "status": "Status",
    "error_type": "Error type",
    "server": "MCP server",
    "tool": "Tool",
}


def _query(request: HttpRequest, names: tuple[str, ...], **changes: str | None) -> str:
    """The request's filters as a query string, with `changes` applied (None removes)."""
    query = QueryDict(mutable=True)
    for name in names:
        current = request.GET.get(name, "")
        if current:
            query[name] = current
    for name, change in changes.items():
        if change is None:
            query.pop(name, None)
        else:
            query[name] = change
    return query.urlencode()


def _suggestions(request: HttpRequest, principal: Any) -> dict[str, list[str]]:
    """Datalist options: only teams and models the viewer may see anyway."""
    accounts = provider_account_list(principal).prefetch_related("models")
    return {
        "teams": list(team_list(principal).exclude(name="everyone").values_list("name", flat=True)),
        "accounts": [a.name for a in accounts],
        "models": [f"{a.name}/{m.name}" for a in accounts for m in a.models.all()],
    }


def pretty_body(body: str | None) -> str | None:
    """JSON bodies indented; anything else (server-sent events) as logged; long ones cut."""
    if body is None:
        return None
    text = body
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    if len(text) > BODY_DISPLAY_LIMIT:
        return text[:BODY_DISPLAY_LIMIT] + "\n… (truncated for display; the API returns it whole)"
    return text


# --- Monitor > Requests ----------------------------------------------------------------------


class RequestListView(ConsoleView):
    """The request log: filters, newest (or oldest) first, keyset pages, CSV export."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """One page of the log."""
        errors: dict[str, list[str]] = {}
        rows: list[Any] = []
        next_cursor = None
        ascending = request.GET.get("sort") == "oldest"
        try:
            filters = params.log_filters(request.GET)
            page = selectors.request_log_page(
                self.principal,
                filters,
                cursor=request.GET.get("cursor", ""),
                size=params.page_size(request.GET),
                ascending=ascending,
            )
            rows, next_cursor = page.rows, page.next_cursor
        except ValidationFailed as exc:
            errors = exc.fields
        names = (*REQUEST_FILTERS, "sort")
        context = {
            "rows": rows,
            "values": {n: request.GET.get(n, "") for n in names},
            "errors": errors,
            "range_choices": RANGE_CHOICES,
            "sort": "oldest" if ascending else "newest",
            "older_query": _query(request, names, cursor=next_cursor) if next_cursor else "",
            "first_query": _query(request, names) if request.GET.get("cursor") else "",
            "csv_url": reverse("dataaccess-api:request_log_csv") + "?" + _query(request, names),
            "suggestions": _suggestions(request, self.principal),
            "tab": "requests",
        }
        return render(
            request, "dataaccess/request_list.html", context, status=400 if errors else 200
        )


class RequestDetailView(ConsoleView):
    """One request: caller, model, usage, timing, metadata, bodies and its trace."""

    def get(self, request: HttpRequest, log_id: str) -> HttpResponse:
        """The detail page (404 when missing or hidden by the rules)."""
        row = selectors.request_log_get_for(self.principal, str(log_id))
        spans = traces.request_trace(row)
        context = {
            "row": row,
            "waterfall": traces.waterfall(spans),
            "trace_ms": max((s.duration_ms for s in spans), default=0.0),
            "request_body": pretty_body(row.request_body),
            "response_body": pretty_body(row.response_body),
            "metadata": sorted((row.metadata or {}).items()),
            "api_url": reverse("dataaccess-api:request_log_detail", args=[str(row.id)]),
        }
        return no_store(render(request, "dataaccess/request_detail.html", context))


class McpCallListView(ConsoleView):
    """MCP tool calls, newest first, keyset pages."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """One page of tool calls."""
        errors: dict[str, list[str]] = {}
        rows: list[Any] = []
        next_cursor = None
        try:
            page = selectors.mcp_call_page(
                self.principal,
                params.mcp_filters(request.GET),
                cursor=request.GET.get("cursor", ""),
                size=params.page_size(request.GET),
            )
            rows, next_cursor = page.rows, page.next_cursor
        except ValidationFailed as exc:
            errors = exc.fields
        context = {
            "rows": rows,
            "values": {n: request.GET.get(n, "") for n in MCP_FILTERS},
            "errors": errors,
            "range_choices": RANGE_CHOICES,
            "older_query": _query(request, MCP_FILTERS, cursor=next_cursor) if next_cursor else "",
            "first_query": _query(request, MCP_FILTERS) if request.GET.get("cursor") else "",
            "tab": "mcp",
        }
        return render(
            request, "dataaccess/mcp_call_list.html", context, status=400 if errors else 200
        )


class McpCallDetailView(ConsoleView):
    """One MCP tool call and its trace."""

    def get(self, request: HttpRequest, call_id: str) -> HttpResponse:
        """The detail page (404 when missing or hidden by the rules)."""
        row = selectors.mcp_call_get_for(self.principal, str(call_id))
        spans = traces.mcp_trace(row)
        context = {
            "row": row,
            "waterfall": traces.waterfall(spans),
            "trace_ms": max((s.duration_ms for s in spans), default=0.0),
            "metadata": sorted((row.metadata or {}).items()),
        }
        return render(request, "dataaccess/mcp_call_detail.html", context)


# --- Monitor > Metrics -----------------------------------------------------------------------


def _group_by(request: HttpRequest) -> str:
    choice = request.GET.get("group_by", "")
    if choice == "metadata":
        return metrics.METADATA_PREFIX + request.GET.get("metadata_group", "").strip()
    return choice


def _charts(board: metrics.Dashboard, group_label: str) -> dict[str, Any]:
    times, step = board.times, board.interval
    out: dict[str, Any] = {
        "requests": charts.line_chart(
            times,
            board.requests,
            interval=step,
            label=f"Requests by {group_label}",
            testid="chart-requests",
        ),
        "errors": charts.line_chart(
            times,
            board.errors_by_type,
            interval=step,
            label="Errors by type",
            stacked=True,
            testid="chart-errors",
        ),
        "latency": charts.line_chart(
            times, board.latency, interval=step, label="Latency", unit="ms", testid="chart-latency"
        ),
    }
    if board.kind == "model":
        out |= {
            "tokens": charts.line_chart(
                times, board.tokens, interval=step, label="Tokens", area=True, testid="chart-tokens"
            ),
            "cost": charts.line_chart(
                times,
                board.cost,
                interval=step,
                label=f"Cost by {group_label}",
                unit="$",
                testid="chart-cost",
            ),
            "ttft": charts.line_chart(
                times,
                board.ttft,
                interval=step,
                label="Time to first token",
                unit="ms",
                testid="chart-ttft",
            ),
        }
    boards = []
    titles = {"user": "Top users", "team": "Top teams", "model": "Top models", "tool": "Top tools"}
    for by, rows in board.leaderboards.items():
        bars = [
            charts.Bar(
                r.name,
                r.requests,
                f"${r.cost_usd:,.4f}" if board.kind == "model" else f"{r.errors} errors",
            )
            for r in rows
        ]
        boards.append(
            {
                "title": titles.get(by, by),
                "by": by,
                "rows": rows,
                "chart": charts.bar_chart(bars, label=titles.get(by, by), testid=f"leaders-{by}"),
            }
        )
    out["leaderboards"] = boards
    return out


class MetricsView(ConsoleView):
    """Charts over the rollups: requests, errors, tokens, cost, latency, TTFT, leaderboards."""

    def get(self, request: HttpRequest) -> HttpResponse:
        """The dashboard for the chosen range, grouping and filters."""
        kind: metrics.Kind = "mcp" if request.GET.get("kind") == "mcp" else "model"
        errors: dict[str, list[str]] = {}
        board = None
        chart_set: dict[str, Any] = {}
        group_by = _group_by(request)
        try:
            filters, rng = params.metric_filters(request.GET)
            board = metrics.dashboard(self.principal, filters, rng, group_by=group_by, kind=kind)
        except ValidationFailed as exc:
            errors = exc.fields
        group_name = board.group_by if board else group_by
        group_label = GROUP_LABELS.get(group_name, group_name.replace(metrics.METADATA_PREFIX, ""))
        if board is not None:
            chart_set = _charts(board, group_label.lower())
        names = (*REQUEST_FILTERS, "group_by", "metadata_group", "kind")
        current_range = request.GET.get("range") or (
            "custom" if request.GET.get("start") or request.GET.get("end") else params.DEFAULT_RANGE
        )
        context = {
            "board": board,
            "charts": chart_set,
            "errors": errors,
            "kind": kind,
            "values": {n: request.GET.get(n, "") for n in names},
            "current_range": current_range,
            "range_links": [
                (name, _query(request, names, range=name, start=None, end=None))
                for name in params.RANGES
            ],
            "group_choices": [
                (key, GROUP_LABELS[key])
                for key in (metrics.GROUP_BYS if kind == "model" else metrics.MCP_GROUP_BYS)
            ],
            "group_value": "metadata"
            if group_by.startswith(metrics.METADATA_PREFIX)
            else (group_by or ("model" if kind == "model" else "tool")),
            "group_label": group_label,
            "kind_links": {
                "model": _query(request, names, kind=None, group_by=None),
                "mcp": _query(request, names, kind="mcp", group_by=None),
            },
            "interval_label": metrics.interval_label(board.interval) if board else "",
            "suggestions": _suggestions(request, self.principal),
        }
        return render(request, "dataaccess/metrics.html", context, status=400 if errors else 200)


# --- Controls > Data Access --------------------------------------------------------------------


def _current_config() -> tuple[str, list[dict[str, Any]]]:
    config = DataAccessConfig.objects.order_by("pk").first()
    if config is None:
        return services.CONFIG_NAME, services.default_rules()
    return config.name, list(config.rules)


class DataAccessView(ConsoleView):
    """The rules, with the retention and export jobs that act on the same data."""

    policy_permission = (Permission.GATEWAY_CONTROLS_LIST, Permission.GATEWAY_CONTROLS_MANAGE)

    def get(self, request: HttpRequest) -> HttpResponse:
        """The rules as a table."""
        name, rules = _current_config()
        context = {
            "name": name,
            "rules": rules,
            "can_edit": self.principal.holds(Permission.GATEWAY_CONTROLS_MANAGE),
            "jobs": {j.name: j for j in JobState.objects.all()},
            "retention_days": settings.GATEWAY_LOG_RETENTION_DAYS,
            "otlp_endpoint": settings.GATEWAY_OTLP_ENDPOINT,
        }
        return render(request, "dataaccess/data_access.html", context)


def _manifest_text(name: str, rules: list[dict[str, Any]]) -> str:
    from dataaccess.manifests import DataAccessKind

    current = DataAccessKind().current(name)
    if current is None:
        current = {"type": DataAccessKind.manifest_type, "name": name, "rules": rules}
    return dump_yaml(current)


def _yaml_rules(text: str) -> list[Any]:
    """The rules of the editor's YAML, or a ValidationFailed naming `yaml` (with the line)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        where = f" (line {line})" if line else ""
        problem = getattr(exc, "problem", None) or "not YAML"
        raise ValidationFailed.field("yaml", f"invalid YAML{where}: {problem}") from exc
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("rules"), list):
        raise ValidationFailed.field(
            "yaml", "a gateway-data-access-config manifest with a list of rules"
        )
    kind = loaded.get("type", "gateway-data-access-config")
    if kind not in ("gateway-data-access-config", "data-access-config"):
        raise ValidationFailed.field("type", "must be gateway-data-access-config")
    return [dict(r) if isinstance(r, Mapping) else r for r in loaded["rules"]]


class DataAccessEditView(ConsoleView):
    """Edit the rules as a form or as YAML; preview what someone would see before saving."""

    policy_permission = (Permission.GATEWAY_CONTROLS_MANAGE,)
    template_name = "dataaccess/data_access_edit.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        """The editor with the saved rules."""
        mode = "yaml" if request.GET.get("mode") == "yaml" else "form"
        name, rules = _current_config()
        formset = RuleFormSet(initial=[rule_initial(r) for r in rules], prefix="rules")
        return self.page(request, mode, formset, _manifest_text(name, rules))

    def post(self, request: HttpRequest) -> HttpResponse:
        """Preview (`action=preview`) or save the edited rules."""
        mode = "yaml" if request.POST.get("mode") == "yaml" else "form"
        action = request.POST.get("action", "preview")
        name, saved = _current_config()
        formset = RuleFormSet(request.POST if mode == "form" else None, prefix="rules")
        if mode == "yaml":
            formset = RuleFormSet(initial=[rule_initial(r) for r in saved], prefix="rules")
        text = request.POST.get("manifest", "").replace("\r\n", "\n")
        problems: list[str] = []
        origin: list[int] = []
        preview: AccessPreview | None = None
        subject = request.POST.get("subject", "").strip()
        subject_error = ""
        invalid = False
        try:
            if mode == "form":
                if not formset.is_valid():
                    raise ValidationFailed("Correct the highlighted fields.")
                rules, origin = formset_rules(formset)
            else:
                rules = _yaml_rules(text)
            parsed = services.rules_validate(rules)
            if action == "save":
                services.data_access_config_put(
                    actor=self.principal, rules=rules, name=name, created_via="console"
                )
                messages.success(request, f"Saved {len(parsed)} Data Access rule(s).")
                return redirect("dataaccess:data_access")
            if not subject:
                subject_error = "Pick a user or virtual account to preview as."
            else:
                try:
                    preview = selectors.data_access_preview(
                        parsed, selectors.subject_principal(subject)
                    )
                except ObjectNotFound as exc:
                    subject_error = exc.message
        except ValidationFailed as exc:
            invalid = True
            if mode == "form":
                problems = formset_errors_apply(formset, origin, exc) or [
                    "Correct the highlighted rules below."
                ]
                if not exc.fields:
                    problems = [exc.message]
            else:
                problems = [
                    f"{path}: {m}" if path and path != "yaml" else m
                    for path, msgs in exc.fields.items()
                    for m in msgs
                ] or [exc.message]
        status = INVALID_FORM if invalid or subject_error else 200
        return self.page(
            request,
            mode,
            formset,
            text,
            problems=problems,
            preview=preview,
            subject=subject,
            subject_error=subject_error,
            status=status,
        )

    def page(
        self,
        request: HttpRequest,
        mode: str,
        formset: Any,
        text: str,
        *,
        problems: list[str] | None = None,
        preview: AccessPreview | None = None,
        subject: str = "",
        subject_error: str = "",
        status: int = 200,
    ) -> HttpResponse:
        """Render the editor."""
        lines = text.count("\n") + 1
        error_lines = sorted(
            {int(m.group(1)) for p in problems or [] if (m := _LINE.search(p)) is not None}
        )
        context = {
            "mode": mode,
            "formset": formset,
            "text": text,
            "line_numbers": range(1, lines + 1),
            "rows": lines + 2,
            "error_lines": error_lines,
            "can_change": True,
            "problems": problems or [],
            "preview": preview,
            "subject": subject,
            "subject_error": subject_error,
            "subjects": selectors.preview_subjects(),
        }
        return no_store(render(request, self.template_name, context, status=status))
