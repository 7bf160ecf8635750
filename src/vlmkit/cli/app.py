"""Entry point: wires the command modules together and turns errors into one clear line."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vlmkit.cli import caption, check, load, models, recommend, train
from vlmkit.cli.render import stderr
from vlmkit.cli.state import CliState
from vlmkit.errors import VlmkitError

DEBUG_ENV = "VLMKIT_DEBUG"

app = typer.Typer(
    name="vlmkit",
    help="Check Hugging Face access, plan GPU memory, load and caption videos with vision-language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vlmkit {version('vlmkit')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    registry: Annotated[Optional[Path], typer.Option(
        "--registry", envvar="VLMKIT_REGISTRY", help="models.toml to use instead of the shipped one "
        "(also accepted after the command).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = CliState(registry)


def _interruptible(command):
    """Ctrl-C in a command that waits on the network or on a model: say so, exit 130."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            stderr.print("Interrupted.")
            raise typer.Exit(130) from None
    return run


app.command("check")(_interruptible(check.check))
app.command("recommend")(recommend.recommend)
app.command("models")(models.models)
app.command("load")(_interruptible(load.load))
app.command("caption")(caption.caption)  # its first Ctrl-C finishes the batch in flight
app.command("train")(_interruptible(train.train))  # its first Ctrl-C saves at the end of the step


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every error becomes `Error:` / `Hint:` on stderr and its exit code.

    Typer runs outside its standalone mode so that the option parser's own errors (an unknown
    option, a value that is not a number) reach the same two lines instead of Click's usage block.
    """
    try:
        code = app(args=argv, prog_name="vlmkit", standalone_mode=False)
    except VlmkitError as exc:
        _print_error(exc.message, exc.hint)
        sys.exit(exc.exit_code)
    except typer.Abort:
        _print_error("Aborted.", None)
        sys.exit(1)
    except typer.TyperException as exc:  # the option parser (Click) refused the command line
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain `vlmkit`: the help, as Typer shows it
            exc.show()
            sys.exit(exc.exit_code)
        _print_error(exc.format_message(), _parser_hint(exc))
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def _print_error(message: str, hint: str | None) -> None:
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    stderr.print(f"[bold red]Error:[/bold red] {escape(message)}", highlight=False)
    if hint:
        stderr.print(f"[bold]Hint:[/bold] {escape(hint)}", highlight=False)


def _parser_hint(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "vlmkit"
    return f"Run `{command} --help` to see its options and what they take."
