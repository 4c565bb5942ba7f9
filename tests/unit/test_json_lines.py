"""JSON Lines uploads without a database: one line to its object and its cells
(webapp.upload.json_values), and a file to rows, field names and refusals (webapp.upload.json_lines)."""

from __future__ import annotations

import gzip

import pytest

from webapp.problems import Problem
from webapp.upload.compression import gunzipped
from webapp.upload.csv_reader import UploadOptions
from webapp.upload.csv_records import MAX_KEPT_COLUMNS
from webapp.upload.json_lines import JsonLinesRows
from webapp.upload.json_values import JsonNumber, LineProblem, cell_text, parsed_object


def rows_of(data: bytes, pieces: int = 7, **options) -> tuple[list, JsonLinesRows]:  # type: ignore[no-untyped-def]
    """The rows of ``data`` sent in pieces of ``pieces`` bytes, and the reader (its field names)."""
    reader = JsonLinesRows(
        [data[i : i + pieces] for i in range(0, len(data), pieces)], UploadOptions(**options)
    )
    return list(reader), reader


def refusal(data: bytes, **options) -> Problem:  # type: ignore[no-untyped-def]
    with pytest.raises(Problem) as caught:
        rows_of(data, **options)
    return caught.value


@pytest.mark.parametrize(
    ("line", "reason", "needle"),
    [
        ("not json", "invalid_json", "at column 1"),
        ('{"text": "a"', "invalid_json", "column"),
        ('{"text": "a"} {}', "invalid_json", "Extra data"),
        ('{"text": NaN}', "invalid_json", "NaN"),
        ('{"text": -Infinity}', "invalid_json", "Infinity"),
        ('{"text": "tab\tinside"}', "invalid_json", "control character"),
        ('{"text": "\\ud800 alone"}', "invalid_json", "surrogate"),
        ('{"\\udc00": 1, "text": "key alone"}', "invalid_json", "surrogate"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", "nested too deeply"),
        ('"just a string"', "not_an_object", "a string"),
        ("[1, 2]", "not_an_object", "an array"),
        ("42", "not_an_object", "a number"),
        ("null", "not_an_object", "null"),
        ("true", "not_an_object", "a boolean"),
    ],
)
def test_a_line_that_is_not_an_object_is_a_line_problem(line, reason, needle):
    with pytest.raises(LineProblem) as caught:
        parsed_object(line + "\n")
    assert caught.value.reason == reason
    assert needle in caught.value.detail


def test_a_surrogate_pair_escaped_is_one_character():
    assert parsed_object('{"text": "\\ud83d\\ude00 ok"}\r\n') == {"text": "\U0001f600 ok"}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('"as is  "', "as is  "),
        ("4.50", "4.50"),
        ("1e5", "1e5"),
        ("-0", "-0"),
        ("12345678901234567890123", "12345678901234567890123"),
        ("true", "true"),
        ("false", "false"),
        ("null", ""),
        ('{"a": [1, 2.0, "é", null, true], "b": {}}', '{"a":[1,2.0,"é",null,true],"b":{}}'),
        ('["x\\"y", "\\n"]', '["x\\"y","\\n"]'),
        ("[]", "[]"),
    ],
)
def test_values_become_cells_as_written(value, text):
    found = parsed_object(f'{{"v": {value}}}')
    assert cell_text(found["v"]) == text


def test_numbers_are_told_apart_from_strings():
    found = parsed_object('{"n": 5, "s": "5"}')
    assert isinstance(found["n"], JsonNumber) and type(found["s"]) is str


def test_rows_fields_and_line_numbers():
    data = (
        b'{"id": 1, "text": "good", "lang": "en"}\n'
        b"\n"
        b"  \t \r\n"
        b'{"ID": "b", "Text": "bad", "stars": 2, "LANG": "fr"}\r\n'
        b'{"text": "no id", "": "blank key not kept", "extra": {"k": [1]}}\n'
        b'{"id": null, "text": "null id", "lang": null}'
    )
    rows, reader = rows_of(data)
    assert reader.field_names == ["lang", "stars", "extra"]  # first spelling, first appearance
    assert [(r.line, r.client_id, r.text, r.problem, r.fields) for r in rows] == [
        (1, "1", "good", None, ("en",)),
        (4, "b", "bad", None, ("fr", "2")),
        (5, "5", "no id", None, ("", "", '{"k":[1]}')),
        (6, "6", "null id", None, ("", "", "")),
    ]
    # Row 1 was written before 'stars' and 'extra' appeared; row 2 before 'extra'.
    assert reader.widen_through == 2


def test_without_new_keys_nothing_is_widened():
    rows, reader = rows_of(b'{"text": "a", "k": 1}\n{"text": "b", "k": 2}\n{"text": "c"}\n')
    assert reader.widen_through == 0 and [r.fields for r in rows] == [("1",), ("2",), ("",)]


def test_bad_lines_are_set_aside_with_their_line_and_id():
    data = b"\n".join(
        [
            b'{"id": "a", "text": "fine"}',
            b"{oops",
            b'{"id": "c"}',
            b'{"id": "d", "text": 3}',
            b'{"id": {"x": 1}, "text": "e"}',
            b'{"id": "f", "text": "one", "TEXT": "two"}',
            b'{"id": "g", "text": null}',
            b'{"id": "h", "text": "   "}',
            b'{"id": "i", "text": "nul \\u0000"}',
            b'{"id": 10, "text": "' + b"x" * 30 + b'"}',
            b'{"id": "' + b"k" * 11 + b'", "text": "long id"}',
        ]
    )
    rows, _ = rows_of(data, max_text_chars=20, max_id_chars=10)
    assert [(r.line, r.client_id, r.problem) for r in rows] == [
        (1, "a", None),
        (2, "2", "invalid_json"),
        (3, "c", "missing_text"),
        (4, "d", "wrong_type"),
        (5, "5", "wrong_type"),
        (6, "f", "duplicate_key"),
        (7, "g", "empty_text"),
        (8, "h", "empty_text"),
        (9, "i", "nul_character"),
        (10, "10", "text_too_long"),
        (11, "k" * 11, "id_too_long"),
    ]
    details = {r.line: r.detail for r in rows}
    assert details[6] == "the keys 'text' and 'TEXT' name one column"
    assert details[4] == "the text is a number, not a string"
    assert details[5] == "the id is an object, not a string or a number"


def test_named_columns_and_the_rest_kept():
    rows, reader = rows_of(
        b'{"ticket": "T-1", "body": "great", "text": "not the text"}\n',
        text_column="Body",
        id_column=" TICKET ",
    )
    assert [(r.client_id, r.text, r.fields) for r in rows] == [("T-1", "great", ("not the text",))]
    assert reader.field_names == ["text"]


def test_strict_refuses_at_the_first_bad_line():
    problem = refusal(b'{"text": "a"}\n[]\n', strict=True)
    assert problem.status == 400 and "Line 2" in problem.detail and "strict" in problem.detail


@pytest.mark.parametrize(
    ("data", "options", "slug", "needle"),
    [
        (b"", {}, "empty-file", "JSON object"),
        (b" \n\r\n\t\n", {}, "empty-file", "JSON object"),
        (b'{"body": "a", "id": 1}\n', {}, "missing-text-column", "'body', 'id'"),
        (b'{"text": "a"}\n', {"text_column": "body"}, "missing-column", "'body' (text_column)"),
        (b'{"text": "a"}\n', {"id_column": "ref"}, "missing-column", "'ref' (id_column)"),
        (b"[]\n{oops\n", {}, "no-valid-rows", "line 1: the line is an array"),
        (b'{"text": "a"}\n' * 4, {"max_rows": 3}, "too-many-rows", "3"),
        (
            b'{"text": "a", "k": "' + b"v" * 2_001 + b'"}\n',
            {},
            "kept-column-too-long",
            "Line 1: the column 'k'",
        ),
        (b'{"text": "a", "k\\u0000": 1}\n', {}, "invalid-column-name", "Line 1"),
        (b'{"text": "' + b"a" * 20_000 + b'"}\n', {"max_line_chars": 10_000}, "invalid-jsonl", "Line 1"),
        (b'{"text": "\xff"}\n', {}, "not-utf8", "Line 1"),
        (b"%PDF-1.4\n", {}, "binary-file", "JSON Lines"),
    ],
)
def test_whole_file_refusals(data, options, slug, needle):
    problem = refusal(data, **options)
    assert problem.slug == slug, problem.detail
    assert needle in problem.detail


def test_more_keys_than_the_cap_is_refused_at_the_line_that_brings_one_too_many():
    first = b'{"text": "a", ' + b", ".join(b'"k%d": 1' % n for n in range(MAX_KEPT_COLUMNS)) + b"}\n"
    _, reader = rows_of(first)
    assert len(reader.field_names) == MAX_KEPT_COLUMNS
    problem = refusal(first + b'{"text": "b", "one more": 1}\n')
    assert problem.slug == "too-many-columns" and "Line 2" in problem.detail


def test_other_encodings_a_bom_and_gzip():
    text = '{"text": "café ☕"}\n'
    assert rows_of(text.encode("utf-16"), encoding="utf-16")[0][0].text == "café ☕"
    assert rows_of(b"\xef\xbb\xbf" + text.encode())[0][0].text == "café ☕"
    inflated = gunzipped([gzip.compress(text.encode())], 1_000)
    assert [r.text for r in JsonLinesRows(inflated, UploadOptions())] == ["café ☕"]


def test_a_line_may_hold_line_separators_inside_its_strings():
    rows, _ = rows_of('{"text": "one\u2028two\x85three"}\n'.encode())
    assert [(r.line, r.text) for r in rows] == [(1, "one\u2028two\x85three")]


@pytest.mark.parametrize("depth", [100, 900, 960, 990, 1_000, 5_000])
def test_a_value_nested_near_the_limit_is_a_row_or_a_row_problem(depth):
    data = b'{"text": "a", "v": ' + b"[" * depth + b"]" * depth + b"}\n"
    rows, _ = rows_of(data + b'{"text": "b"}\n', pieces=65_536)
    assert [row.line for row in rows] == [1, 2]
    assert rows[0].problem in (None, "invalid_json") and rows[1].problem is None
    if rows[0].problem is None:
        assert rows[0].fields == ("[" * depth + "]" * depth,)


def test_the_copy_tuples_hold_the_rows_numbered_as_ingest_numbers_them():
    from webapp.upload.copy_tuples import rows_of_copy

    data = (
        b'{"id": "a", "text": "caf\\u00e9 \xe2\x98\x95", "k": [1]}\n[]\n{"text": "b"}\n{"text": ""}\n' * 3_000
    )
    rows, reader = rows_of(data, pieces=65_536)
    copied = JsonLinesRows([data], UploadOptions())
    blocks = list(copied.copy_blocks(7))
    assert len(blocks) > 1 and copied.counts == (6_000, 6_000)
    assert list(rows_of_copy(blocks)) == rows
    assert copied.field_names == reader.field_names == ["k"]


class Counted:
    """Pieces of a body, counting the bytes the reader has taken."""

    def __init__(self, body: bytes, size: int) -> None:
        self.body, self.size, self.taken = body, size, 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for start in range(0, len(self.body), self.size):
            self.taken += min(self.size, len(self.body) - start)
            yield self.body[start : start + self.size]


@pytest.mark.parametrize("size", [7, 4096, 65_536])
@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "ok"}\n{"text": "' + b"a" * 2_000_000,  # a string that never closes, no newline
        b'{"text": "ok"}\n' + b" " * 2_000_000 + b"\n",  # blank, but longer than any line may be
    ],
    ids=["unclosed", "blank"],
)
def test_a_line_past_the_limit_is_refused_before_the_rest_is_read(size, body):
    pieces = Counted(body, size)
    with pytest.raises(Problem) as caught:
        list(JsonLinesRows(pieces, UploadOptions(max_line_chars=100_000)))
    assert (caught.value.slug, caught.value.detail[:7]) == ("invalid-jsonl", "Line 2:")
    assert pieces.taken <= 100_000 + 2 * size + 8192 < len(body)
