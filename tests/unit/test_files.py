"""Hostile files: every input is bounded (size, depth, aliases) and decoded or refused with
one line naming the file; `lint`, `rollout plan` and `policy audit -f` exit 2, never 70."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meshctl.adapters.files import FileProblem, dump_yaml, parse_bytes, read_documents
from meshctl.cli.main import cli

from .test_validation import BASE

ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
) + "\n"


def hostile(tmp_path: Path) -> dict[str, Path]:
    files = {
        "alias-bomb": ALIAS_BOMB.encode(),
        "deep-flow": b"a: " + b"[" * 20000 + b"]" * 20000 + b"\n",
        "deep-block": "".join(f"{' ' * i}k{i}:\n" for i in range(300)).encode(),
        "binary": bytes(range(256)) * 64,
        "utf16-no-bom": dump_yaml(BASE).encode("utf-16-le"),
        "latin1": "metadata: {name: caf\xe9}\n".encode("latin-1"),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_bytes(data)
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:  # 50 MB of valid YAML
        line = b"- " + b"x" * 97 + b"\n"
        f.write(line * (50 * 1024 * 1024 // len(line)))
    out["big"] = big
    return out


@pytest.mark.parametrize("name, fragment", [
    ("alias-bomb", "aliases"),
    ("deep-flow", "nest"),
    ("deep-block", "nested"),
    ("binary", "not text"),
    ("utf16-no-bom", "not text"),
    ("latin1", "not UTF-8"),
    ("big", "larger than"),
])
def test_hostile_files_are_refused_with_one_line_naming_the_file(tmp_path, name, fragment):
    path = hostile(tmp_path)[name]
    with pytest.raises(FileProblem) as err:
        read_documents(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}:") and "\n" not in message
    assert fragment in message, message


@pytest.mark.parametrize("encoding, bom", [
    ("utf-8", b"\xef\xbb\xbf"), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
    ("utf-32-le", b"\xff\xfe\x00\x00"), ("utf-32-be", b"\x00\x00\xfe\xff"),
])
def test_unicode_with_a_byte_order_mark_is_decoded(encoding, bom):
    text = dump_yaml(BASE)
    docs = parse_bytes(bom + text.encode(encoding), "r.yaml")
    assert [d.body for d in docs] == [BASE]


def test_a_few_anchors_and_aliases_are_fine():
    docs = parse_bytes(b"a: &x {k: v}\nb: *x\nc: *x\n", "r.yaml")
    assert docs[0].body == {"a": {"k": "v"}, "b": {"k": "v"}, "c": {"k": "v"}}


@pytest.mark.parametrize("command", [("lint",), ("rollout", "plan", "-f"), ("policy", "audit", "-f")])
def test_no_hostile_file_makes_a_command_exit_70(tmp_path, command):
    for name, path in hostile(tmp_path).items():
        result = CliRunner().invoke(cli, [*command, str(path)])
        assert result.exit_code == 2, f"{name}: {result.exit_code} {result.output[-300:]}"
        assert str(path) in result.stderr, name
