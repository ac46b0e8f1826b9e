"""Reading and writing YAML files: the one home of PyYAML.

Every YAML or JSON document meshctl reads from a file or standard input comes through
:func:`parse_bytes`, which bounds what a document may cost before PyYAML builds it:

- size: at most :data:`MAX_BYTES` (a Kubernetes object is at most about 1.5 MB);
- text: UTF-8, or UTF-8/16/32 with a byte order mark; anything else (binary, UTF-16 without
  a mark) is refused, not guessed;
- nesting: at most :data:`MAX_DEPTH` levels (PyYAML's composer recurses);
- aliases: the document with every alias expanded has at most :data:`MAX_NODES` nodes
  (ten aliases of ten aliases of ... is a small file and a billion nodes), and no alias
  points into its own anchor (a recursive value that no JSON can hold).

The checks read PyYAML's event stream once (libyaml's parser where it is installed), so a
hostile file is refused in well under a second and in bounded memory. A problem becomes a
:class:`FileProblem` with the file and line, never a traceback.
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BOMS = (  # longest first: the UTF-32 LE mark begins with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class Document:
    source: str  # file name, or "-" for standard input
    index: int  # position in a multi-document file
    body: Any


class FileProblem(Exception):
    """A file that cannot be read or parsed; ``str()`` is one line naming file and line."""


def read_bytes(source: str) -> bytes:
    """The bytes of ``source`` ("-": standard input), refused past :data:`MAX_BYTES`."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with Path(source).open("rb") as f:
                data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise FileProblem(f"{source}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise FileProblem(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MB; "
                          "split it into smaller files")
    return data


def decode(data: bytes, source: str) -> str:
    """UTF-8, or UTF-8/16/32 with a byte order mark; anything else is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as exc:
                raise FileProblem(f"{source}: not valid {encoding.upper()} text at byte "
                                  f"{exc.start + len(bom)}") from exc
    if b"\x00" in data:
        raise FileProblem(f"{source}: not text (binary, or UTF-16/32 without a byte order "
                          "mark); save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"{source}: not UTF-8 text at byte {exc.start}; save it as "
                          "UTF-8") from exc


def read_documents(source: str) -> list[Document]:
    """Every non-empty YAML document in ``source`` ("-" reads standard input)."""
    return parse_bytes(read_bytes(source), source)


def read_yaml(path: str) -> Any:
    """The single document in ``path`` (a kubeconfig), bounded like every other; None if
    the file is empty. Missing files raise OSError."""
    if not Path(path).exists():
        raise FileNotFoundError(path)
    docs = read_documents(path)
    return docs[0].body if docs else None


def parse_bytes(data: bytes, source: str = "-") -> list[Document]:
    return parse_documents(decode(data, source), source)


def parse_documents(text: str, source: str = "-") -> list[Document]:
    try:
        _check_costs(text, source)
        bodies = list(yaml.load_all(text, Loader=_Loader))  # a safe loader (libyaml when present)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FileProblem(f"{source}{where}: YAML syntax error: {problem}") from exc
    return [Document(source, i, body) for i, body in enumerate(bodies) if body is not None]


def _check_costs(text: str, source: str) -> None:
    """Refuse a document nested past MAX_DEPTH or larger than MAX_NODES once aliases are
    expanded, from the event stream alone (nothing is built).

    The expanded size of a node is 1 plus that of its children, an alias counting as the
    size of its anchor: ``a: &a [x, x]`` then ``b: [*a, *a]`` is 3 + 1 + 2 * 3 = 10 nodes."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, expanded size so far] per open collection
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > MAX_DEPTH:
                raise FileProblem(f"{source}{_line(event)}: nested deeper than {MAX_DEPTH} "
                                  "levels; flatten it")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if any(open_anchor == event.anchor for open_anchor, _ in stack):
                raise FileProblem(f"{source}{_line(event)}: alias *{event.anchor} refers to "
                                  "itself (a document cannot contain itself)")
            anchor, size = None, sizes.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.DocumentEndEvent):
            total, stack = total + stack[0][1], [[None, 0]]
            continue
        else:
            continue
        if anchor:
            sizes[anchor] = size
        stack[-1][1] += size
        if total + stack[0][1] + sum(s for _, s in stack[1:]) > MAX_NODES:
            raise FileProblem(f"{source}{_line(event)}: more than {MAX_NODES} values (each "
                              "alias counted expanded); split the file or use fewer aliases")


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f":{mark.line + 1}" if mark is not None else ""


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
