"""Errors users can act on. Each names where the problem is (file, row, column, parameter)."""

from __future__ import annotations


class KbError(Exception):
    """Base for every error kb reports to a user instead of a traceback."""


class InputError(KbError):
    """Bad input data: a sheet, CSV or corpus file that cannot be accepted as it is."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        sheet: str | None = None,
    ) -> None:
        """``column`` is written as the user sees it: "C列" in a sheet, "列 c03" in YAML;
        ``sheet`` names the worksheet of a workbook of several (its row and column alone
        would point at the first sheet)."""
        self.problem = message
        self.file = file
        self.row = row
        self.column = column
        self.sheet = sheet
        super().__init__(self._render())

    def in_sheet(self, sheet: str | None) -> InputError:
        """This error, naming ``sheet`` too (unchanged when it names one already or
        ``sheet`` is None)."""
        if sheet is None or self.sheet is not None:
            return self
        return InputError(
            self.problem, file=self.file, row=self.row, column=self.column, sheet=sheet
        )

    def _render(self) -> str:
        # Rendered the way office staff name a spot in a sheet:
        # 「data.xlsx（シート「2ページ」、3行目、C列）」.
        spot = [f"シート「{self.sheet}」"] if self.sheet is not None else []
        if self.row is not None:
            spot.append(f"{self.row}行目")
        if self.column is not None:
            spot.append(self.column)
        where = (self.file or "") + (f"（{'、'.join(spot)}）" if spot else "")
        return f"{where}: {self.problem}" if where else self.problem


class IndexMissingError(KbError):
    """No index has been built yet."""


class IndexMismatchError(KbError):
    """The index on disk was built by another embedder or schema, or is damaged."""


class CellNotFound(KbError):
    """No cell with this id in the loaded build (a stale link, a typo)."""

    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id
        super().__init__(f"セル {cell_id} はありません")


class FilterError(KbError):
    """A search parameter with a value kb does not know; ``param`` names the parameter."""

    def __init__(self, message: str, param: str) -> None:
        self.param = param
        super().__init__(message)
