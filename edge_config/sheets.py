"""Spreadsheets plant engineers keep (CSV or XLSX), read as numbered rows with a header of aliases.

CSV may be UTF-8 (with or without BOM) or GB18030 (what Excel on a Chinese Windows saves); the
delimiter is sniffed (`,`, `;`, tab). XLSX is read with openpyxl, the first sheet unless a
preferred sheet name exists.

Hostile files are bounded before and while they are read: at most `MAX_FILE_BYTES` read from a file,
`MAX_ROWS` rows and `MAX_COLUMNS` columns, CSV cells as Python's csv module bounds them (128 KiB); an XLSX
is a zip, so before openpyxl opens it its entries are checked (count, unpacked size, and how much each one
unpacks per byte stored: a "zip bomb" of a few KB that unpacks to gigabytes is refused at once), and the
sheet's declared dimensions too; rows are then streamed (read-only mode).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SheetError(ValueError):
    """Problems in a sheet: one `file:row: column: message` per line."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        super().__init__("\n".join(issues))


SHEET_SUFFIXES = (".csv", ".xlsx", ".xlsm")
MAX_FILE_BYTES = 20 << 20  # a sheet file; the cloud API takes uploads of the same size
MAX_ROWS = 100_000
MAX_COLUMNS = 256
MAX_UNPACKED = 64 << 20  # an XLSX whose entries unpack to more than this is refused
MAX_ENTRIES = 1_000
MAX_RATIO = 100  # unpacked bytes per stored byte, for entries above 1 MB unpacked (sheets reach ≈ 10-20)
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension ref="[A-Z]*\d*:?([A-Z]+)(\d+)"')


def _too_many(row_no: int, columns: int) -> None:
    if row_no > MAX_ROWS:
        raise SheetError([f"more than {MAX_ROWS} rows: split the sheet"])
    if columns > MAX_COLUMNS:
        raise SheetError([f"row {row_no}: more than {MAX_COLUMNS} columns"])


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def check_xlsx(data: bytes) -> None:
    """Refuse an XLSX that would take more than it is worth to open (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise SheetError([f"not a readable XLSX workbook: {e}"]) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise SheetError([f"not a workbook: {len(entries)} entries in the archive"])
        unpacked = sum(i.file_size for i in entries)
        if unpacked > MAX_UNPACKED:
            raise SheetError([f"the workbook unpacks to {unpacked >> 20} MB (at most {MAX_UNPACKED >> 20} MB)"])
        for i in entries:
            if i.file_size > 1 << 20 and i.file_size > MAX_RATIO * max(1, i.compress_size):
                raise SheetError([f"{i.filename} unpacks {i.file_size // max(1, i.compress_size)}× its size: refused"])
            if i.filename.startswith("xl/worksheets/") and i.filename.endswith(".xml"):
                with archive.open(i) as f:
                    head = f.read(4096)
                m = _DIMENSION.search(head)
                if m is not None:
                    _too_many(int(m.group(2)), _column_number(m.group(1)))


def decode_csv(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SheetError(["the CSV file is neither UTF-8 nor GB18030 text"])


def read_sheet_file(path: Path) -> bytes:
    """The bytes of a sheet file, refused (SheetError naming it) over `MAX_FILE_BYTES` before it is read whole;
    OSError when it cannot be read."""
    with path.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SheetError([f"{path}: larger than {MAX_FILE_BYTES >> 20} MB: split the sheet"])
    return data


def csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    text = decode_csv(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    row_no = 0
    try:
        for row_no, cells in enumerate(reader, start=1):
            _too_many(row_no, len(cells))
            yield row_no, cells
    except csv.Error as e:  # a cell over the module's field limit (128 KiB), a NUL in strict dialects, ...
        raise SheetError([f"row {row_no + 1}: not a readable CSV row: {e}"]) from None


def cell_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def xlsx_rows(data: bytes, preferred: Iterable[str] = ()) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    check_xlsx(data)
    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # zipfile.BadZipFile, KeyError, InvalidFileException, ...
        raise SheetError([f"not a readable XLSX workbook: {e}"]) from None
    try:
        names = {n.strip().lower(): n for n in wb.sheetnames}
        sheet = wb[next((names[k] for k in preferred if k in names), wb.sheetnames[0])]
        # read-only mode pads each row to max_col: the width that counts is up to the last cell with a value
        for i, row in enumerate(sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS + 1), start=1):
            width = next((k for k in range(len(row), 0, -1) if row[k - 1] is not None), 0)
            _too_many(i, width)
            yield i, ["" if v is None else cell_text(v) for v in row[:width]]
    finally:
        wb.close()


def sheet_rows(data: bytes, filename: str, preferred: Iterable[str] = ()) -> Iterator[tuple[int, list[str]]]:
    """Non-empty rows of a `.csv` or `.xlsx` file, numbered as the engineer sees them, cells stripped."""
    kind = Path(filename).suffix.lower()
    if kind not in SHEET_SUFFIXES:
        raise SheetError([f"{filename}: use a .csv or .xlsx file"])
    rows = csv_rows(data) if kind == ".csv" else xlsx_rows(data, preferred)
    try:
        for row_no, cells in rows:
            stripped = [c.strip() for c in cells]
            if any(stripped):
                yield row_no, stripped
    except SheetError as e:  # about the whole file (not a workbook, not text, too large): say which file
        raise SheetError([i if i.startswith(f"{filename}:") else f"{filename}: {i}" for i in e.issues]) from None


@dataclass(frozen=True, slots=True)
class Header:
    columns: dict[str, int]  # our key → column index
    names: dict[str, str]  # our key → the sheet's header text
    ignored: list[str]  # header texts that are none of ours

    def cell(self, cells: list[str], key: str) -> str:
        col = self.columns.get(key)
        return cells[col] if col is not None and col < len(cells) else ""


def read_header(
    cells: list[str], aliases: Mapping[str, tuple[str, ...]], required: Iterable[str], where: str
) -> Header:
    """Map a header row onto our keys by their aliases (case-insensitive); SheetError on a missing
    required column or a column given twice."""
    columns: dict[str, int] = {}
    names: dict[str, str] = {}
    ignored: list[str] = []
    issues: list[str] = []
    for col, text in enumerate(cells):
        key = next((k for k, names_ in aliases.items() if text.lower() in names_), None)
        if key is None:
            if text:
                ignored.append(text)
        elif key in columns:
            issues.append(f"{where}: column {text!r} appears twice")
        else:
            columns[key] = col
            names[key] = text
    for key in required:
        if key not in columns:
            issues.append(f"{where}: the header needs a {key!r} column ({'/'.join(aliases[key])})")
    if issues:
        raise SheetError(issues)
    return Header(columns, names, ignored)
