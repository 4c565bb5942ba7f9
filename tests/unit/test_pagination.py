"""Page parameters and cursors without a database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webapp.listings import BATCHES, ERRORS, RESULTS, RESULTS_OF_ONE_SENTIMENT
from webapp.pagination import encode_cursor, parse_page_request, scope
from webapp.problems import Problem

BATCH = "batch-" + "1" * 32
POSITIVE = {"sentiment": "positive"}


def test_defaults_and_page_arithmetic():
    request = parse_page_request({}, RESULTS, BATCH, {}, "k")
    assert (request.after, request.before, request.per_page, request.page) == (0, None, 50, 1)
    request = parse_page_request({"page": "3", "per_page": "20"}, RESULTS, BATCH, {}, "k")
    assert (request.after, request.per_page, request.page) == (40, 20, 3)


def test_cursor_round_trip_and_binding_to_key_owner_list_and_filters():
    cursor = encode_cursor("k", BATCH, scope(RESULTS, {}), 120)
    assert parse_page_request({"after": cursor}, RESULTS, BATCH, {}, "k").after == 120
    assert parse_page_request({"before": cursor}, RESULTS, BATCH, {}, "k").before == 120
    refused = [
        (RESULTS, BATCH, {}, "another key"),
        (RESULTS, "batch-" + "2" * 32, {}, "k"),
        (ERRORS, BATCH, {}, "k"),
        (RESULTS_OF_ONE_SENTIMENT, BATCH, POSITIVE, "k"),
    ]
    for listing, owner, filters, key in refused:
        with pytest.raises(Problem) as info:
            parse_page_request({"after": cursor}, listing, owner, filters, key)
        assert info.value.status == 400


def test_a_filtered_cursor_is_the_same_whoever_made_it():
    # The pages and the API both bind a cursor to the list's name and its filters, nothing else.
    cursor = encode_cursor("k", BATCH, "results:positive", 7)
    request = parse_page_request({"after": cursor}, RESULTS_OF_ONE_SENTIMENT, BATCH, POSITIVE, "k")
    assert request.after == 7


def test_page_numbers_only_where_rows_are_numbered_densely_or_can_be_located():
    assert parse_page_request({"page": "1"}, RESULTS_OF_ONE_SENTIMENT, BATCH, POSITIVE, "k").page == 1
    # One sentiment is not numbered densely, but page P is located from a checkpoint.
    located = parse_page_request(
        {"page": "3", "per_page": "10"}, RESULTS_OF_ONE_SENTIMENT, BATCH, POSITIVE, "k"
    )
    assert (located.page, located.skip, located.after) == (3, 20, None)
    with pytest.raises(Problem, match="no page numbers"):
        parse_page_request({"page": "2"}, replace(BATCHES, ignores=()), "batches", {}, "k")


def test_one_form_at_a_time_and_before_only_where_lists_read_backwards():
    cursor = encode_cursor("k", BATCH, scope(ERRORS, {}), 3)
    with pytest.raises(Problem, match="only one of"):
        parse_page_request({"after": cursor, "page": "2"}, ERRORS, BATCH, {}, "k")
    with pytest.raises(Problem, match="forwards only"):
        parse_page_request({"before": cursor}, replace(ERRORS, ignores=()), BATCH, {}, "k")


@pytest.mark.parametrize("position", [-1, "7", 1.5, True, [1, 2], None])
def test_a_signed_cursor_with_a_position_of_the_wrong_shape_is_refused(position):
    cursor = encode_cursor("k", BATCH, scope(RESULTS, {}), position)
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, RESULTS, BATCH, {}, "k")


@pytest.mark.parametrize("value", ["0", "-3", "1e3", "٣", " 1", "1001"])
def test_bad_per_page(value):
    with pytest.raises(Problem) as info:
        parse_page_request({"per_page": value}, RESULTS, BATCH, {}, "k")
    assert info.value.status == 400


def test_cursor_scopes_are_those_the_api_always_signed():
    """Cursors handed out before the paginators were one still work."""
    assert scope(RESULTS, {}) == "results"
    assert scope(RESULTS_OF_ONE_SENTIMENT, POSITIVE) == "results:positive"
    assert scope(ERRORS, {}) == "errors"
    assert scope(BATCHES, {}) == "batches:"
    assert scope(BATCHES, {"status": "completed"}) == "batches:completed"


@pytest.mark.parametrize("position", [["not a time", 5], ["2026-01-01T00:00:00+00:00", 2**70], [1, 2], "x"])
def test_a_signed_batches_cursor_postgresql_could_not_read_is_refused(position):
    cursor = encode_cursor("k", "batches", scope(BATCHES, {}), position)
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, BATCHES, "batches", {}, "k")


def test_parameters_a_list_always_ignored_are_still_ignored():
    assert parse_page_request({"page": "7", "before": "x"}, BATCHES, "batches", {}, "k").after is None
    assert parse_page_request({"before": "x"}, ERRORS, BATCH, {}, "k").page == 1


def test_a_signed_row_cursor_past_a_postgresql_integer_is_refused():
    cursor = encode_cursor("k", BATCH, scope(RESULTS, {}), 2**31)
    with pytest.raises(Problem):
        parse_page_request({"after": cursor}, RESULTS, BATCH, {}, "k")
