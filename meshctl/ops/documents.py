"""Loading Rollouts and AnalysisTemplates from files, with every problem named; writing
views as YAML documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshctl.adapters.files import Document, FileProblem, dump_yaml, iter_documents
from meshctl.domain.problems import InvalidSpec, Problem
from meshctl.domain.spec import AnalysisTemplate, Rollout
from meshctl.domain.validation import load_document


@dataclass(frozen=True)
class SourcedProblem:
    source: str
    problem: Problem

    def __str__(self) -> str:
        text = str(self.problem)
        return f"{self.source}: {text}" if text else self.source


@dataclass
class Loaded:
    rollouts: list[Rollout] = field(default_factory=list)
    rollout_sources: list[str] = field(default_factory=list)  # where each rollout came from
    templates: dict[str, AnalysisTemplate] = field(default_factory=dict)
    problems: list[SourcedProblem] = field(default_factory=list)


def _where(doc: Document) -> str:
    return doc.source if doc.index == 0 else f"{doc.source}#{doc.index + 1}"


def load(sources: list[str]) -> Loaded:
    out = Loaded()
    for item in iter_documents(sources):
        if isinstance(item, FileProblem):
            out.problems.append(SourcedProblem(str(item), Problem("", "")))
            continue
        try:
            value = load_document(item.body)
        except InvalidSpec as exc:
            out.problems += [SourcedProblem(_where(item), p) for p in exc.problems]
            continue
        if isinstance(value, Rollout):
            out.rollouts.append(value)
            out.rollout_sources.append(_where(item))
        else:
            out.templates[value.name] = value
    return out


def as_yaml(value: Any) -> str:
    """A view (plain dicts, lists and scalars) as one YAML document."""
    return dump_yaml(value)
