"""The ``tagger`` command line (Typer). Each command is a thin layer over an importable function."""

from __future__ import annotations

import typer

from ._version import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Sequence tagging and classification with Numba-compiled recurrent networks.",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tagger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Sequence tagging and classification with Numba-compiled recurrent networks."""


@app.command()
def demo(
    epochs: int = typer.Option(8, min=1, help="Training epochs."),
    cell: str = typer.Option("lstm", help="Recurrent cell: lstm, gru, rnn or irnn."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(None, min=1, help="CPU threads (default: all)."),
) -> None:
    """Train a BiLSTM-CRF on a built-in task that needs right context, beside a forward-only one."""
    from .demo import train_lookahead
    from .nn.recurrent import CELLS

    if cell not in CELLS:
        typer.echo(f"error: unknown cell {cell!r}; expected one of {', '.join(CELLS)}", err=True)
        raise typer.Exit(2)
    typer.echo("Task: tag every symbol with the symbol two steps later (needs right context).")
    typer.echo(f"Bidirectional {cell.upper()} + CRF (the first epoch includes compiling kernels):")
    bi = train_lookahead(True, cell, epochs=epochs, seed=seed, threads=threads, log=typer.echo)
    typer.echo(f"Forward-only {cell.upper()} + CRF:")
    uni = train_lookahead(False, cell, epochs=epochs, seed=seed, threads=threads, log=typer.echo)
    typer.echo(f"Held-out token accuracy: bidirectional {bi:.2%}, forward-only {uni:.2%}")


def main() -> None:
    """Entry point of the ``tagger`` console script."""
    app()
