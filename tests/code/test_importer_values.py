"""The importer's parsers and detectors on tiny inputs: words, dates, booleans, numbers,
encodings, delimiters and line numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from leadscore.crm.importer.read import SourceError, iter_batches, open_source, read_source
from leadscore.crm.importer.values import (
    DEFAULT_VALUE_MAPS,
    detect_date_order,
    map_values,
    parse_booleans,
    parse_dates,
    parse_numbers,
)


def iso(values: pa.Array) -> list[str | None]:
    return [None if v is None else v.isoformat() for v in values.to_pylist()]


def test_status_words_in_english_and_chinese_ignore_case_and_spaces() -> None:
    words = pa.array(
        [
            " Closed  WON",
            "赢单",
            "成交",
            "closed lost",
            "输单",
            "丢单",
            "Prospecting",
            "later",
            None,
        ]
    )
    mapped = map_values(words, DEFAULT_VALUE_MAPS["status"])
    assert mapped.values.to_pylist() == [
        "won",
        "won",
        "won",
        "lost",
        "lost",
        "lost",
        "open",
        None,
        None,
    ]
    assert mapped.failed.tolist() == [False] * 7 + [True, False]
    assert mapped.unmatched == {"later": 1}
    assert mapped.applied["赢单"] == ("won", 1)


def test_otherwise_maps_unknown_words_but_still_reports_them() -> None:
    mapped = map_values(
        pa.array(["Signed", "Signed", "Closed Won"]), {"won": ["closed won"]}, "open"
    )
    assert mapped.values.to_pylist() == ["open", "open", "won"]
    assert not mapped.failed.any()
    assert mapped.unmatched == {"Signed": 2}


def test_day_first_is_detected_only_from_a_value_that_reads_one_way() -> None:
    assert detect_date_order(pa.array(["04/03/2022", "14/03/2022"])).order == "day_first"
    assert detect_date_order(pa.array(["04/03/2022", "03/14/2022"])).order == "month_first"
    ambiguous = detect_date_order(pa.array(["04/03/2022", "05/06/2022"]))
    assert ambiguous.order is None and ambiguous.slashed == 2
    assert detect_date_order(pa.array(["14/03/2022", "03/14/2022"])).conflicting


def test_dates_day_first_month_first_and_iso_spellings() -> None:
    day_first, failed = parse_dates(
        pa.array(["04/03/2022", "24/03/2022 16:11", "junk", None]), "day_first"
    )
    assert iso(day_first)[:2] == ["2022-03-04T00:00:00+00:00", "2022-03-24T16:11:00+00:00"]
    assert failed.tolist() == [False, False, True, False]
    month_first, _ = parse_dates(pa.array(["04/03/2022"]), "month_first")
    assert iso(month_first) == ["2022-04-03T00:00:00+00:00"]
    spellings = pa.array(
        [
            "2023-10-28 20:45:25",
            "2023-10-28T20:45:25.000Z",
            "2024-01-22T16:14:25.000+0100",
            "2023-09-06",
        ]
    )
    values, failed = parse_dates(spellings)
    assert iso(values) == [
        "2023-10-28T20:45:25+00:00",
        "2023-10-28T20:45:25+00:00",
        "2024-01-22T15:14:25+00:00",
        "2023-09-06T00:00:00+00:00",
    ]
    assert not failed.any()


def test_an_impossible_date_fails_instead_of_rolling_over() -> None:
    values, failed = parse_dates(pa.array(["2023-02-30", "2023-02-28"]))
    assert failed.tolist() == [True, False]
    assert values[0].as_py() is None


def test_numbers_with_separators_and_currency_symbols() -> None:
    n = parse_numbers(
        pa.array(["1,234.50", "¥1,234", "€ 99", "-1.39E8", "(1,234)", "1,2,3", "nan", None])
    )
    assert n.values.to_pylist()[:5] == [1234.5, 1234.0, 99.0, -139000000.0, -1234.0]
    assert n.failed.tolist() == [False] * 5 + [True, True, False]
    assert n.symbols == {"¥": 1, "€": 1}
    european = parse_numbers(pa.array(["1.234,50", "€1.234"]), decimal=",")
    assert european.values.to_pylist() == [1234.5, 1234.0]


def test_booleans_in_every_spelling_and_empty_as_false_when_declared() -> None:
    values, failed = parse_booleans(
        pa.array(["TRUE", "1", "true", "是", "yes", "FALSE", "0", "否", "maybe", None])
    )
    assert values.to_pylist() == [True] * 5 + [False] * 3 + [None, None]
    assert failed.tolist() == [False] * 8 + [True, False]
    values, _ = parse_booleans(pa.array(["1", None]), empty_is_false=True)
    assert values.to_pylist() == [True, False]


def test_gb18030_semicolons_are_detected_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes("编号;状态;金额\nD1;赢单;¥1,234\nD2;输单;2\n".encode("gb18030"))
    source = read_source(path)
    assert (source.encoding, source.delimiter) == ("GB18030 (GBK)", "semicolon")
    assert source.table.column("状态").to_pylist() == ["赢单", "输单"]


def test_bom_and_latin1_are_detected(tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfId,Name\n1,a\n")
    assert read_source(bom).encoding == "UTF-8 with BOM"
    assert read_source(bom).table.column_names == ["Id", "Name"]
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("id\tcity\n1\tKöln\n".encode("latin-1"))
    source = read_source(latin)
    assert (source.encoding, source.delimiter) == ("Windows-1252 (Latin-1)", "tab")
    assert source.table.column("city").to_pylist() == ["Köln"]


def test_lines_count_physical_lines_and_rows_with_wrong_field_counts(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes(b'id,name,x\n1,"two\nlines",3\n2,b\n3,c,4\n4,"x\r\ny",5\n5,z,6,7\n6,q,8\n')
    source = read_source(path)
    assert source.table.column("id").to_pylist() == ["1", "3", "4", "6"]
    assert source.lines.tolist() == [2, 5, 6, 9]
    assert [(b.line, b.fields, b.expected) for b in source.bad_rows] == [(4, 2, 3), (8, 4, 3)]
    assert source.rows_read == 6


def test_blank_lines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes(b"id,x\n1,a\n\n2,b\n")
    assert read_source(path).lines.tolist() == [2, 4]


def test_an_empty_file_and_a_duplicate_header_are_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty.csv line 1: the file is empty"):
        read_source(empty)
    twice = tmp_path / "twice.csv"
    twice.write_bytes(b"Id,ID\n1,2\n")
    with pytest.raises(SourceError, match="columns 1 and 2 are both named"):
        read_source(twice)


def test_xlsx_rows_keep_their_sheet_row_numbers(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Id", "Amount", "Created"])
    sheet.append(["D1", 1234.0, None])
    sheet.append([None, None, None])
    sheet.append(["D2", 5, "2024-01-02"])
    book.save(tmp_path / "deals.xlsx")
    source = read_source(tmp_path / "deals.xlsx")
    assert source.table.column("Amount").to_pylist() == ["1234", "5"]
    assert source.lines.tolist() == [2, 4]
    assert np.array_equal(source.lines, [2, 4]) and source.encoding == "XLSX"


def test_lines_and_bad_rows_are_the_same_read_in_tiny_batches(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes(
        b'id,name,x\n1,"two\nlines",3\n2,b\n3,c,4\n4,"x\r\ny",5\n5,z,6,7\n6,q,8\n7,r\n'
    )
    whole = read_source(path)
    source = open_source(path)
    batches = list(iter_batches(source, block_size=16))
    assert len(batches) >= 3
    assert np.concatenate([b.lines for b in batches]).tolist() == [2, 5, 6, 9]
    assert whole.lines.tolist() == [2, 5, 6, 9]
    assert [b.line for batch in batches for b in batch.bad] == [4, 8, 10]
    assert source.bad_rows == whole.bad_rows and source.rows_read == whole.rows_read == 7
