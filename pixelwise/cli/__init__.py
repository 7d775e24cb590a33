"""The `pixelwise` command. Thin: parses arguments, calls the library, prints.

Each command group lives in its own module under `pixelwise/cli/` and exposes `register(app)`; add the module name
to `COMMAND_MODULES` to mount it. Any `PixelwiseError` becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperOption

from pixelwise.core.errors import PixelwiseError

# typer prints a type column for every option, `<bool>` after plain flags too (`--json <bool>`), which reads as if the
# flag took a value: flags show no type.
_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)

# Modules under pixelwise.cli whose register(app) adds commands, in help order.
COMMAND_MODULES = ("infer", "media", "conformance", "pixelworld", "eval", "serve", "robustness", "bench", "train")

app = typer.Typer(
    name="pixelwise",
    help="Pixel-level vision-language models: segment, ask, evaluate, train and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from pixelwise import __version__  # lazy: `pixelwise --help` and other commands stay fast

        typer.echo(f"pixelwise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version."),
) -> None:
    pass


for _name in COMMAND_MODULES:
    importlib.import_module(f"pixelwise.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, map library errors to exit code 2 with a one-line message."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except PixelwiseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # usage errors (missing argument, bad option): click's exception type, which typer may vendor
        if callable(getattr(e, "show", None)) and hasattr(e, "exit_code"):
            e.show()
            return 2
        raise
    # With standalone_mode=False click returns the code of a `typer.Exit` instead of raising it.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
