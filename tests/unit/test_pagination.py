"""Page parameters and cursors without a database."""

from __future__ import annotations

import pytest

from webapp.pagination import encode_cursor, parse_page_request
from webapp.problems import Problem

BATCH = "batch-" + "1" * 32


def test_defaults_and_page_arithmetic():
    request = parse_page_request({}, BATCH, "k", "results")
    assert (request.after_row, request.per_page, request.page) == (0, 50, 1)
    request = parse_page_request({"page": "3", "per_page": "20"}, BATCH, "k", "results")
    assert (request.after_row, request.per_page, request.page) == (40, 20, 3)


def test_cursor_round_trip_and_key_binding():
    cursor = encode_cursor("k", BATCH, 120, "results")
    assert parse_page_request({"after": cursor}, BATCH, "k", "results").after_row == 120
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, BATCH, "another key", "results")
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, "batch-" + "2" * 32, "k", "results")
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, BATCH, "k", "errors")


@pytest.mark.parametrize("value", ["0", "-3", "1e3", "٣", " 1", "1001"])
def test_bad_per_page(value):
    with pytest.raises(Problem) as info:
        parse_page_request({"per_page": value}, BATCH, "k", "results")
    assert info.value.status == 400
