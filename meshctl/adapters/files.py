"""Reading and writing YAML files: the one home of PyYAML.

A syntax error becomes a :class:`FileProblem` with the file and line, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Document:
    source: str  # file name, or "-" for standard input
    index: int  # position in a multi-document file
    body: Any


class FileProblem(Exception):
    """A file that cannot be read or parsed; ``str()`` is one line naming file and line."""


def read_documents(source: str) -> list[Document]:
    """Every non-empty YAML document in ``source`` ("-" reads standard input)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileProblem(f"{source}: cannot read: {exc.strerror or exc}") from exc
    return parse_documents(text, source)


def parse_documents(text: str, source: str = "-") -> list[Document]:
    try:
        bodies = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileProblem(f"{source}{where}: YAML syntax error: {problem}") from exc
    return [Document(source, i, body) for i, body in enumerate(bodies) if body is not None]


def iter_documents(sources: list[str]) -> Iterator[Document | FileProblem]:
    for source in sources:
        try:
            yield from read_documents(source)
        except FileProblem as problem:
            yield problem


def dump_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=100)


def dump_all(values: list[Any]) -> str:
    return yaml.safe_dump_all(values, sort_keys=False, default_flow_style=False, width=100)
