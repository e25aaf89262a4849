"""Reading and writing manifest files. No Django here: the remote `gateway` CLI uses it too."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# A key is secret when one of its words is one of these (`client_secret`, `api-key`, `token`),
# but not when the word merely starts that way (`max_tokens`).
SECRET_KEY_RE = re.compile(
    r"(^|[_-])(password|secret|token|api[_-]?key|private[_-]?key|digest|credentials?"
    r"|authorization|cookie)([_-]|$)"
)
MASK = "********"
SUFFIXES = (".yaml", ".yml")
SECRET_REF_SCHEME = "gw-secret://"  # noqa: S105 - a URL scheme; see gateway_project.secret_refs: a reference, not a value


def mask_secrets(value: Any) -> Any:
    """A copy of `value` whose secret-looking keys are masked, at any depth."""
    if isinstance(value, Mapping):
        return {k: _mask_item(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value


def _mask_item(key: Any, value: Any) -> Any:
    if isinstance(value, str) and value.startswith(SECRET_REF_SCHEME):
        return value
    if SECRET_KEY_RE.search(str(key).lower()) and not isinstance(value, Mapping | list):
        return MASK
    return mask_secrets(value)


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from (`file.yaml`, 0-based index in the file)."""

    data: Any
    source: str = "<input>"
    index: int = 0

    @property
    def where(self) -> str:
        return f"{self.source}#{self.index + 1}"


@dataclass(frozen=True)
class Problem:
    """One error: the document, the field path within it, and what is wrong."""

    where: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path:
            return f"{self.where}: {self.path}: {self.message}"
        return f"{self.where}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"document": self.where, "path": self.path, "message": self.message}


class ManifestError(Exception):
    """The set was refused; nothing was changed."""

    def __init__(self, problems: Sequence[Problem], status: int = 400) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)
        self.status = status


def parse_yaml(text: str, source: str = "<input>") -> list[Document]:
    """Every non-empty document of a YAML stream."""
    try:
        loaded = list(yaml.safe_load_all(text))
    except RecursionError as exc:
        raise ManifestError([Problem(source, "", "invalid YAML: nested too deeply")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([Problem(source, "", f"invalid YAML{where}: {problem}")]) from exc
    return [Document(d, source, i) for i, d in enumerate(loaded) if d is not None]


def manifest_paths(directory: Path) -> list[Path]:
    """Every YAML file below `directory`, recursively, in a stable order; dot-folders skipped."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.suffix in SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def load_documents(files: Sequence[str] = (), dirs: Sequence[str] = ()) -> list[Document]:
    """Documents from files (`-` is standard input) and directories; all YAML errors at once."""
    sources: list[tuple[str, str]] = []
    for name in files:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        sources.append(("<stdin>" if name == "-" else name, text))
    for directory in dirs:
        root = Path(directory)
        if not root.is_dir():
            raise ManifestError([Problem(directory, "", "not a directory")])
        sources += [(str(p), p.read_text(encoding="utf-8")) for p in manifest_paths(root)]
    docs: list[Document] = []
    problems: list[Problem] = []
    for source, text in sources:
        try:
            docs += parse_yaml(text, source)
        except ManifestError as exc:
            problems += exc.problems
    if problems:
        raise ManifestError(problems)
    return docs


def dump_yaml(manifest: Mapping[str, Any] | None) -> str:
    """Stable YAML for export and diffs, secrets masked."""
    if manifest is None:
        return ""
    return yaml.safe_dump(
        mask_secrets(dict(manifest)), sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def export_path(root: Path, directory: str, name: str) -> Path:
    """Where export writes one object: `<root>/<kind dir>/<name>.yaml`."""
    return root / directory / f"{name}.yaml"


def format_results(results: Sequence[Mapping[str, Any]], *, show_diff: bool, dry_run: bool) -> str:
    """Human output of apply: one line an object, its notes, and optionally its diff."""
    lines = []
    suffix = " (dry run)" if dry_run else ""
    for result in results:
        lines.append(f"{result['type']}/{result['name']}: {result['action']}{suffix}")
        lines += [f"  note: {note}" for note in result.get("notes", [])]
        if show_diff and result.get("diff"):
            lines.append(str(result["diff"]).rstrip("\n"))
    changed = sum(1 for r in results if r["action"] != "unchanged")
    lines.append(
        f"{len(results)} object(s), {changed} change(s)" + (" would be made" if dry_run else "")
        if changed
        else f"{len(results)} object(s), nothing to change"
    )
    return "\n".join(lines)


def export_files(items: Sequence[tuple[str, str, Mapping[str, Any]]], root: Path) -> list[Path]:
    """Write (directory, name, manifest) items as one file each; returns the paths written."""
    written = []
    for directory, name, manifest in items:
        path = export_path(root, directory, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dump_yaml(manifest), encoding="utf-8")
        written.append(path)
    return written


def dump_stream(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Several manifests as one multi-document YAML stream."""
    return "---\n".join(dump_yaml(m) for m in manifests)
