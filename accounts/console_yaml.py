"""Apply using YAML: one generic console view for every object type, and the global page.

An object's page shows its manifest (`Kind.current`, secrets as `gw-secret://` references) in
an editor. "Preview changes" runs `gateway_project.manifests.apply(dry_run=True)` and "Apply"
runs it for real. Both go through the kinds, which call the services, so the caller's
permissions decide: a dry run needs exactly the rights that saving needs.

Each app declares one small subclass of `ObjectYamlView` per object type; declaring it also
registers how to link to an object of that type and the starter manifest behind the list
pages' "New from YAML" buttons.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.console import DENIED, ConsoleView, no_store
from accounts.policy import Principal
from gateway_project import manifests
from gateway_project.manifest_io import ManifestError, Problem, dump_yaml, parse_yaml

TEMPLATE = "accounts/manifest_apply.html"
SOURCE = "editor"  # Problem.where is "editor#<n>" for document n, "editor" for the stream
PREVIEW, APPLY = "preview", "apply"
MAX_TEXT = 200_000
EXTRA_ROWS = 2
_LINE = re.compile(r"\(line (\d+), column \d+\)")
_DOC = re.compile(rf"^{SOURCE}#(\d+)$")

ObjectUrl = Callable[[str], str | None]
_OBJECT_URLS: dict[str, ObjectUrl] = {}


@dataclass(frozen=True)
class Starter:
    """A template manifest for "New from YAML": `{subject}` and `{email}` name the caller."""

    manifest_type: str
    label: str
    text: str

    def render(self, principal: Principal) -> str:
        """The template with the caller filled in."""
        subject = principal.subject if principal.is_user else "user:you@example.com"
        email = subject.removeprefix("user:")
        return self.text.replace("{subject}", subject).replace("{email}", email)


_STARTERS: dict[str, Starter] = {}


def object_url(manifest_type: str, name: str) -> str | None:
    """The console page of an object named in a manifest, when its type has one."""
    finder = _OBJECT_URLS.get(manifest_type)
    return finder(name) if finder is not None else None


def starters() -> list[Starter]:
    """Every registered starter manifest, in a stable order."""
    return [_STARTERS[key] for key in sorted(_STARTERS)]


# --- what the page shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemRow:
    """One validation problem: the document, the field path and the line when known."""

    document: str
    path: str
    message: str
    line: int | None


@dataclass(frozen=True)
class DiffLine:
    """One line of a unified diff and its colour class."""

    css: str
    text: str


@dataclass(frozen=True)
class ResultRow:
    """One object apply changed (or would change)."""

    type: str
    name: str
    action: str
    notes: Sequence[str]
    diff: Sequence[DiffLine]
    url: str | None


@dataclass
class Outcome:
    """The result of a preview or an apply: results, or the problems that stopped it."""

    results: list[ResultRow] = field(default_factory=list)
    problems: list[ProblemRow] = field(default_factory=list)
    status: int = 200
    denied: bool = False

    @property
    def changed(self) -> int:
        """How many objects are (or would be) created, updated or deleted."""
        return sum(1 for r in self.results if r.action != "unchanged")


def document_label(where: str) -> str:
    """`editor#2` -> `document 2`; the whole stream (a YAML syntax error) -> `YAML`."""
    match = _DOC.match(where)
    if match:
        return f"document {match.group(1)}"
    return "YAML" if where == SOURCE else where


def problem_rows(problems: Sequence[Problem]) -> list[ProblemRow]:
    """Problems for display, with the line number an invalid-YAML message carries."""
    rows = []
    for problem in problems:
        match = _LINE.search(problem.message)
        line = int(match.group(1)) if match else None
        rows.append(ProblemRow(document_label(problem.where), problem.path, problem.message, line))
    return rows


def diff_lines(diff: str) -> list[DiffLine]:
    """A unified diff split into lines classed as file header, hunk, addition or removal."""
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            css = "diff-file"
        elif line.startswith("@@"):
            css = "diff-hunk"
        elif line.startswith("+"):
            css = "diff-add"
        elif line.startswith("-"):
            css = "diff-del"
        else:
            css = "diff-ctx"
        out.append(DiffLine(css, line))
    return out


def run_apply(principal: Principal, text: str, *, dry_run: bool) -> Outcome:
    """Parse the editor's text and apply it (or preview it) as `principal`."""
    if len(text) > MAX_TEXT:
        problem = Problem(SOURCE, "", f"the manifest is longer than {MAX_TEXT} characters")
        return Outcome(problems=problem_rows([problem]), status=400)
    try:
        docs = parse_yaml(text, source=SOURCE)
        if not docs:
            raise ManifestError([Problem(SOURCE, "", "no manifest: the editor is empty")])
        results = manifests.apply(docs, actor=principal, dry_run=dry_run)
    except ManifestError as exc:
        return Outcome(
            problems=problem_rows(exc.problems), status=exc.status, denied=exc.status == 403
        )
    rows = [
        ResultRow(
            r.type,
            r.name,
            r.action,
            r.notes,
            diff_lines(r.diff),
            None if r.action == "deleted" else object_url(r.type, r.name),
        )
        for r in results
    ]
    return Outcome(results=rows)


def applied_message(outcome: Outcome) -> str:
    """The flash after a successful apply."""
    if len(outcome.results) == 1:
        only = outcome.results[0]
        return f"Applied {only.type} {only.name}: {only.action}."
    return f"Applied {len(outcome.results)} objects: {outcome.changed} changed."


@dataclass(frozen=True)
class YamlTarget:
    """The object an editor page is about, as the generic view needs it."""

    manifest_type: str
    name: str
    url: str
    can_change: bool
    breadcrumbs: tuple[tuple[str, str], ...]  # (label, url or "") before the object itself


def page_context(
    text: str,
    *,
    outcome: Outcome | None,
    dry_run: bool,
    can_change: bool,
) -> dict[str, Any]:
    """The editor, its gutter and the outcome of the last preview or apply."""
    lines = text.count("\n") + 1  # the editor numbers the empty line after a final newline
    error_lines = sorted({p.line for p in outcome.problems if p.line}) if outcome else []
    return {
        "text": text,
        "line_numbers": range(1, lines + 1),
        "rows": lines + EXTRA_ROWS,
        "error_lines": error_lines,
        "outcome": outcome,
        "dry_run": dry_run,
        "can_change": can_change,
        "denied_message": DENIED,
        "starters": starters(),
    }


def editor_text(request: HttpRequest) -> str:
    """The submitted manifest with browser line endings normalised."""
    return request.POST.get("manifest", "").replace("\r\n", "\n")


# --- the views -------------------------------------------------------------------------------


class ObjectYamlView(ConsoleView, ABC):
    """The "Apply using YAML" page of one object: view, preview and apply its manifest.

    Subclasses set `manifest_types`, find the object in `target()` through its `_get_for`
    selector (404 when missing or hidden) and link objects by name in `url_for_name()`.
    """

    manifest_types: ClassVar[tuple[str, ...]] = ()
    starter_label: ClassVar[str] = ""
    starter: ClassVar[str] = ""  # a template manifest (see Starter)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register how to link to objects of these types, and the starter manifest."""
        super().__init_subclass__(**kwargs)
        for manifest_type in cls.manifest_types:
            _OBJECT_URLS[manifest_type] = cls.url_for_name
        if cls.starter and cls.manifest_types:
            first = cls.manifest_types[0]
            _STARTERS[first] = Starter(first, cls.starter_label or first, cls.starter)

    @abstractmethod
    def target(self, **kwargs: Any) -> YamlTarget:
        """The object named by the URL, as the principal may see it."""

    @classmethod
    @abstractmethod
    def url_for_name(cls, name: str) -> str | None:
        """The console page of the object called `name` (None when there is none)."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """The object's manifest in the editor."""
        target = self.target(**kwargs)
        current = manifests.kinds()[target.manifest_type].current(target.name)
        if current is None:
            raise Http404("this object has no manifest")
        text = dump_yaml(current)
        return self.page(request, target, text, None, dry_run=True)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """Preview (`action=preview`) or apply the edited manifest."""
        target = self.target(**kwargs)
        text = editor_text(request)
        dry_run = request.POST.get("action") != APPLY
        outcome = run_apply(self.principal, text, dry_run=dry_run)
        if not dry_run and not outcome.problems:
            messages.success(request, applied_message(outcome))
            if not any(r.notes for r in outcome.results):  # notes (invitation links) show once
                return redirect(self.after_apply_url(target, outcome))
        return self.page(request, target, text, outcome, dry_run=dry_run)

    @classmethod
    def after_apply_url(cls, target: YamlTarget, outcome: Outcome) -> str:
        """This object's page if it was applied, else the one object applied, else this page's."""
        key = (target.manifest_type, target.name)
        mine = next((r.url for r in outcome.results if (r.type, r.name) == key and r.url), None)
        return mine or cls.single_url(outcome) or target.url

    @staticmethod
    def single_url(outcome: Outcome) -> str | None:
        """The page of the one object applied, if that is what happened."""
        return outcome.results[0].url if len(outcome.results) == 1 else None

    def page(
        self,
        request: HttpRequest,
        target: YamlTarget,
        text: str,
        outcome: Outcome | None,
        *,
        dry_run: bool,
    ) -> HttpResponse:
        """Render the editor page for one object."""
        context = page_context(text, outcome=outcome, dry_run=dry_run, can_change=target.can_change)
        context |= {
            "target": target,
            "title": f"{target.manifest_type} {target.name}",
            "back_url": target.url,
        }
        status = outcome.status if outcome else 200
        return no_store(render(request, TEMPLATE, context, status=status))


class ManifestApplyView(ConsoleView):
    """The global "Apply YAML" page: any manifests, several documents at once.

    `?type=<manifest type>` prefills a starter manifest of that type ("New from YAML").
    """

    def get(self, request: HttpRequest) -> HttpResponse:
        """An editor, empty or with a starter manifest."""
        starter = _STARTERS.get(request.GET.get("type", ""))
        text = starter.render(self.principal) if starter else ""
        return self.page(request, text, None, dry_run=True)

    def post(self, request: HttpRequest) -> HttpResponse:
        """Preview or apply whatever the editor holds."""
        text = editor_text(request)
        dry_run = request.POST.get("action") != APPLY
        outcome = run_apply(self.principal, text, dry_run=dry_run)
        if not dry_run and not outcome.problems:
            messages.success(request, applied_message(outcome))
            single = ObjectYamlView.single_url(outcome)
            if single and not outcome.results[0].notes:
                return redirect(single)
        return self.page(request, text, outcome, dry_run=dry_run)

    def page(
        self, request: HttpRequest, text: str, outcome: Outcome | None, *, dry_run: bool
    ) -> HttpResponse:
        """Render the global editor page."""
        context = page_context(text, outcome=outcome, dry_run=dry_run, can_change=True)
        context |= {"target": None, "title": "Apply YAML", "back_url": ""}
        status = outcome.status if outcome else 200
        return no_store(render(request, TEMPLATE, context, status=status))
