"""SQL file parsing and the scoring frame, without a database."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from core.queries import all_queries, parse_queries, sql_dir
from jobrunner.scoring import label, score_texts


def test_every_query_has_a_table_first_name_and_a_purpose():
    queries = all_queries()
    assert {"chunks_claim", "chunks_finish", "batch_results_page", "batches_get"} <= set(queries)
    # Every table of the schema, read from schema.sql, so a new table's statements are named after it.
    tables = re.findall(r"^CREATE TABLE (\w+)", (sql_dir() / "schema.sql").read_text(), re.MULTILINE)
    assert {"batches", "chunks", "api_keys"} <= set(tables)
    for name, query in queries.items():
        assert query.purpose and not query.text.endswith(";")
        assert any(name.startswith(table + "_") for table in tables), name


def test_parse_rejects_a_query_without_purpose():
    with pytest.raises(ValueError, match="purpose"):
        parse_queries("-- name: x_y\nSELECT 1;\n")


def test_labels_use_vader_thresholds():
    compound = pd.Series([0.05, 0.0499, -0.0499, -0.05, 1.0, -1.0])
    assert label(compound).tolist() == ["positive", "neutral", "neutral", "negative", "positive", "negative"]


def test_score_texts_matches_the_package_in_input_order():
    texts = ["I love this!", "I hate this.", "A table.", "I love this!", ""]
    frame = score_texts(texts)
    analyzer = SentimentIntensityAnalyzer()
    assert list(frame.columns) == ["neg", "neu", "pos", "compound", "sentiment", "score"]
    for index, text in enumerate(texts):
        expected = analyzer.polarity_scores(text)
        assert frame.loc[index, ["neg", "neu", "pos", "compound"]].to_dict() == expected
        assert frame.loc[index, "score"] == abs(expected["compound"])
    assert score_texts([]).empty


def test_fast_and_reference_frames_are_equal():
    from tests.helpers import sample_texts

    texts = sample_texts(2000, seed=9)
    pd.testing.assert_frame_equal(score_texts(texts, "fast"), score_texts(texts, "reference"))


def test_unknown_scorer_is_refused():
    with pytest.raises(ValueError, match="unknown scorer"):
        score_texts(["x"], "nope")


def test_a_scorer_is_plugged_in_by_module_and_name():
    frame = score_texts(["good", "bad", "good"], "tests.scorers:constant")
    assert frame["compound"].tolist() == [0.0, 0.0, 0.0]
    assert frame["sentiment"].tolist() == ["neutral"] * 3


@pytest.mark.parametrize("name", ["tests.scorers:missing", "no.such.module:f", "tests.scorers:POISON"])
def test_a_scorer_that_cannot_be_loaded_is_refused_by_name(name):
    with pytest.raises(ValueError, match="scorer"):
        score_texts(["x"], name)


def test_a_scorer_must_answer_once_per_text():
    with pytest.raises(ValueError, match="returned 1 results for 2 texts"):
        score_texts(["a", "b"], "tests.unit.test_queries_and_scoring:_one_answer")


def _one_answer(texts):
    return [{"neg": 0.0, "neu": 1.0, "pos": 0.0, "compound": 0.0}]


@pytest.mark.parametrize("compound", [float("nan"), 1.5, float("inf")])
def test_numbers_outside_vaders_ranges_are_a_scoring_failure(compound):
    import tests.unit.test_queries_and_scoring as me

    me._compound = compound
    with pytest.raises(ValueError, match="outside VADER's ranges"):
        score_texts(["a"], "tests.unit.test_queries_and_scoring:_wild")


_compound = 0.0


def _wild(texts):
    return [{"neg": 0.0, "neu": 1.0, "pos": 0.0, "compound": _compound} for _ in texts]
