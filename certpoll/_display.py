"""How the command line draws: a plain-text table, and a live ``rich`` view when installed.

The demo's summary and the ``status`` command's order lines both come through here; what
goes in the rows is theirs. ``rich`` is the ``cli`` extra, imported only when drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["has_rich", "live_view", "order_lines", "plain_table", "rich_table"]


def has_rich() -> bool:
    """True when ``rich`` is installed (it draws the live views)."""
    try:
        import rich  # noqa: F401
    except ModuleNotFoundError:  # pragma: no cover - rich is installed with the cli extra
        return False
    return True


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``columns`` as text: the first column left-aligned, the others right."""
    table = [columns, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in table
    )


def rich_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str) -> Table:
    """The same table as :func:`plain_table`, drawn by ``rich``."""
    from rich.table import Table

    view = Table(title=title)
    for index, name in enumerate(columns):
        view.add_column(name, justify="left" if index == 0 else "right")
    for row in rows:
        view.add_row(*row)
    return view


def order_lines(rows: Sequence[tuple[str, str]]) -> Table:
    """One line per order (its id, then what is known of it) whatever the terminal's width.

    A line too long for the terminal (a 48-digit serial) is cut here and ends with ``…``, so
    that a cut serial number never passes for a whole one; the whole line is printed when the
    command ends. The text is shown as it is: a CA's words are not read as ``rich`` markup.
    """
    from rich.table import Table
    from rich.text import Text

    id_width = max((len(order_id) for order_id, _ in rows), default=0)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for order_id, known in rows:
        table.add_row(Text(f"{order_id.ljust(id_width)}  {known}"))
    return table


@contextmanager
def live_view(render: Callable[[], Table], out: IO[str]) -> Iterator[Callable[[], None]]:
    """A live view of ``render()`` on ``out``, gone when the block ends; yields the redraw."""
    from rich.console import Console
    from rich.live import Live

    with Live(render(), console=Console(file=out), auto_refresh=False, transient=True) as live:
        yield lambda: live.update(render(), refresh=True)
