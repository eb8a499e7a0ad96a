"""Reading tables of labelled text: TSV, CSV, JSON lines, parquet and Hugging Face `save_to_disk` folders.

Every row comes with where it is, for error messages: "file:line" in text files, "file[i]" (from 0, as
`dataset[i]`) in parquet files and saved datasets. Problems raise a one-line `TicketlabError`.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import TicketlabError

Row = tuple[str, tuple]  # (where, values of the selected columns)
Record = tuple[str, dict[str, Any]]  # (where, the whole row)
SUFFIXES = (".parquet", ".jsonl", ".json", ".csv", ".tsv")  # in the order `find_splits` prefers them
SPLIT_FILE = re.compile(r"(?P<split>\w+)(-\d+-of-\d+)?")  # train, dev_matched, train-00000-of-00002


def read_table(path: Path, columns: Sequence[str], header: Sequence[str] | None = None) -> list[Row]:
    """Values of `columns` in every row of a file (by suffix, see SUFFIXES) or of a `save_to_disk` Dataset folder.

    Delimited files name their columns in the first line, or take `header` when they have none.
    """
    if path.is_dir():
        records = _saved(path)
    elif path.suffix in (".tsv", ".csv"):
        records = _delimited(path, header)
    elif path.suffix in (".json", ".jsonl"):
        records = _json_lines(path)
    elif path.suffix == ".parquet":
        records = _parquet(path)
    else:
        raise TicketlabError(f"{path}: not a table; expected a save_to_disk folder or one of {', '.join(SUFFIXES)}")
    try:
        return [(where, _select(where, record, columns)) for where, record in records]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TicketlabError(f"cannot read {path}: {_one_line(error)}") from None


def find_splits(folder: Path) -> dict[str, list[Path]]:
    """Split name -> what holds it in `folder`: the split folders of a `save_to_disk` DatasetDict, else the files
    `SPLIT.SUFFIX` or shards `SPLIT-00000-of-00002.SUFFIX` of the first suffix in SUFFIXES that has any."""
    saved = folder / "dataset_dict.json"
    if saved.is_file():
        try:
            return {name: [folder / name] for name in json.loads(saved.read_text(encoding="utf-8"))["splits"]}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TicketlabError(f"{saved}: not the index of a save_to_disk DatasetDict ({_one_line(error)})") from None
    for suffix in SUFFIXES:
        found: dict[str, list[Path]] = {}
        for path in sorted(folder.glob(f"*{suffix}")):
            match = SPLIT_FILE.fullmatch(path.name.removesuffix(suffix))
            if match:
                found.setdefault(match["split"], []).append(path)
        if found:
            return found
    return {}


def _select(where: str, record: dict[str, Any], columns: Sequence[str]) -> tuple:
    try:
        return tuple(record[name] for name in columns)
    except KeyError as error:
        raise TicketlabError(f"{where}: no column {error.args[0]!r}; found: {', '.join(record)}") from None


def _delimited(path: Path, header: Sequence[str] | None) -> Iterator[Record]:
    """TSV fields are never quoted (GLUE's text holds lone double quotes); CSV quotes as Python and pandas write it."""
    tsv = path.suffix == ".tsv"
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(handle)
        names = list(header) if header else next(reader, [])
        line = reader.line_num
        for fields in reader:
            where, line = f"{path}:{line + 1}", reader.line_num
            if not fields:
                continue  # a blank line
            if len(fields) != len(names):
                raise TicketlabError(f"{where}: {len(fields)} fields, expected {len(names)}")
            yield where, dict(zip(names, fields))


def _json_lines(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise TicketlabError(f"{path}:{number}: bad JSON ({error.msg}); expected one object per line") from None
            if not isinstance(record, dict):
                raise TicketlabError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
            yield f"{path}:{number}", record


def _parquet(path: Path) -> Iterator[Record]:
    import pyarrow  # imported when needed: the command line starts faster
    import pyarrow.parquet

    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as error:
        raise TicketlabError(f"cannot read {path}: {_one_line(error)}") from None
    return ((f"{path}[{i}]", row) for i, row in enumerate(rows))


def _saved(path: Path) -> Iterator[Record]:
    import datasets

    try:
        rows = datasets.load_from_disk(str(path)).to_list()
    except (OSError, ValueError) as error:
        raise TicketlabError(f"cannot read the saved dataset {path}: {_one_line(error)}") from None
    return ((f"{path}[{i}]", row) for i, row in enumerate(rows))


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
