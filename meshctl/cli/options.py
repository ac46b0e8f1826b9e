"""What every command shares: the global options, ``-f``, durations and the error line.

Global options are defined once (:data:`GLOBAL_OPTIONS`). :func:`share_global_options`
gives them to the root group, where they get their defaults, and a hidden copy of each to
every command under it, so ``meshctl rollout plan -f x.yaml -o json`` works as kubectl
users type it. A value given after the command wins over one given before it.

Errors are one line each, ``error: ...``, with a ``hint: ...`` line where the fix is known;
never a Python class name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import click

from meshctl.cli import exitcodes
from meshctl.cli.render import OUTPUT_CHOICES

if TYPE_CHECKING:
    _ParamType = click.ParamType[float, Any]  # generic only in newer click
else:
    _ParamType = click.ParamType

FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)


class Decorator(Protocol):
    """What ``click.option`` returns: the command, with one more parameter."""

    def __call__(self, f: FC, /) -> FC: ...


ERROR = "error: "
HINT = "hint: "

# (declarations, settings): the one definition of each global option; ``dest`` is the key
# in ``ctx.obj`` that commands read.
GLOBAL_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--kubeconfig",), {"type": click.Path(dir_okay=False), "help": "Path to a kubeconfig."}),
    (("--context", "kube_context"), {"help": "Kubeconfig context to use."}),
    (("-n", "--namespace"), {"help": "Namespace (default: the context's)."}),
    (("-o", "--output"), {"type": click.Choice(OUTPUT_CHOICES), "default": "table",
                          "show_default": True, "help": "Output format."}),
    (("--server",), {"help": "Use the controller's gRPC API at HOST:PORT."}),
    (("--tls-cert",), {"type": click.Path(dir_okay=False), "help": "Client certificate (gRPC)."}),
    (("--tls-key",), {"type": click.Path(dir_okay=False), "help": "Client key (gRPC)."}),
    (("--tls-ca",), {"type": click.Path(dir_okay=False), "help": "CA bundle (gRPC)."}),
]

GLOBAL_EPILOG = ("Global options (-o, -n, --context, --kubeconfig, --server, --tls-*) go "
                 "before or after the command; see 'meshctl --help'.")


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after a command: it overrides the root's value."""
    source = ctx.get_parameter_source(param.name or "")
    if value is not None and source is not click.core.ParameterSource.DEFAULT:
        ctx.find_root().ensure_object(dict)[param.name or ""] = value


def share_global_options(root: click.Group) -> None:
    """Add the global options to ``root`` and a hidden copy to every command below it."""
    for decls, settings in GLOBAL_OPTIONS:
        root.params.append(click.Option(list(decls), **settings))
    for command in _below(root):
        for decls, settings in GLOBAL_OPTIONS:
            copy = {k: v for k, v in settings.items() if k not in ("default", "show_default")}
            command.params.append(click.Option(
                list(decls), **copy, hidden=True, expose_value=False, callback=_set_global,
                allow_from_autoenv=False))
        if command.epilog is None:
            command.epilog = GLOBAL_EPILOG


def _below(group: click.Group) -> list[click.Command]:
    out: list[click.Command] = []
    for command in group.commands.values():
        out.append(command)
        if isinstance(command, click.Group):
            out += _below(command)
    return out


def files_option(help_text: str, required: bool = False) -> Decorator:
    """``-f/--filename``, repeatable; each a file, a directory (its ``.yaml``, ``.yml`` and
    ``.json`` files, sorted) or ``-`` (standard input), as ``kubectl apply -f`` takes."""
    return click.option("-f", "--filename", "files", multiple=True, required=required,
                        help=help_text + " Repeatable; a directory reads its .yaml, .yml "
                        "and .json files; '-' reads standard input.")


def files_argument() -> Decorator:
    """More files after the options, so a shell glob (``-f rollouts/*.yaml``) works."""
    return click.argument("more_files", nargs=-1, metavar="[FILE]...")


SUFFIXES = (".yaml", ".yml", ".json")


def expand_files(*groups: tuple[str, ...]) -> list[str]:
    """Every file named, directories replaced by the files in them (not recursive, as
    ``kubectl -f DIR`` without ``-R``); a directory without any stays, so reading it fails
    with its name."""
    out: list[str] = []
    for source in (s for group in groups for s in group):
        path = Path(source)
        if source != "-" and path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.suffix in SUFFIXES and p.is_file())
            out += found or [source]
        else:
            out.append(source)
    return out


def fail(ctx: click.Context, code: int, *lines: str, hint: str | None = None) -> NoReturn:
    """One ``error:`` line per problem, a hint where the fix is known, then exit ``code``."""
    for line in lines:
        click.echo(ERROR + line, err=True)
    if hint:
        click.echo(HINT + hint, err=True)
    ctx.exit(code)


class Duration(_ParamType):
    """A duration as Kubernetes users write it (``90s``, ``5m``, ``1h30m``), or seconds
    (``90``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        from meshctl.domain.durations import parse_duration

        try:
            return float(value) if str(value).replace(".", "", 1).isdigit() else \
                parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def tls_files(ctx: click.Context, flag: str, files: tuple[str | None, ...],
              readers: tuple[str, ...], operators: tuple[str, ...], why: str
              ) -> tuple[str, str, str]:
    """What serving ``flag`` (``--grpc-addr``, ``--dashboard-addr``) to client certificates
    needs: the certificate, key and client CA files, and at least one identity; exit 2
    naming what is missing."""
    cert, key, client_ca = files
    if cert is None or key is None or client_ca is None:
        fail(ctx, exitcodes.INVALID, f"{flag} needs --grpc-cert, --grpc-key and --grpc-client-ca ({why})")
    if not readers and not operators:
        fail(ctx, exitcodes.INVALID, f"{flag} needs at least one --grpc-reader or --grpc-operator")
    return cert, key, client_ca


def timeout_option(help_text: str, default: str | None = None) -> Decorator:
    return click.option("--timeout", type=Duration(), default=default,
                        show_default=default is not None,
                        help=help_text + " A duration: 90s, 5m, 1h30m (a bare number is seconds).")
