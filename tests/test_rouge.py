"""ROUGE per sample equals `rouge_score` called directly; the summary reads its bootstrap settings."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from tasks.rouge import RougeF1, summarize_metric

REFERENCE = "The cat was found under the bed after a long search by the family."
PREDICTION = "The family searched for hours and found their cats hiding under a bed."


def test_values_equal_rouge_score_called_directly():
    direct = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(
        REFERENCE, PREDICTION
    )
    ours = RougeF1(["rouge1", "rouge2", "rougeL"], use_stemmer=True)(REFERENCE, PREDICTION)
    assert ours == {name: direct[name].fmeasure for name in ("rouge1", "rouge2", "rougeL")}
    assert 0.0 < ours["rouge2"] < ours["rouge1"] < 1.0


def test_f1_is_symmetric_so_the_notebooks_swapped_arguments_do_not_matter():
    scorer = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True)
    assert (
        scorer.score(REFERENCE, PREDICTION)["rouge2"].fmeasure
        == scorer.score(PREDICTION, REFERENCE)["rouge2"].fmeasure
    )


def test_stemmer_is_used():
    scores = RougeF1(["rouge1"], use_stemmer=True)("cats running", "cat run")
    assert scores["rouge1"] == pytest.approx(1.0)


@pytest.mark.parametrize("prediction", ["", "   \n "])
def test_empty_prediction_scores_zero(prediction):
    assert RougeF1(["rouge1", "rouge2", "rougeL"], use_stemmer=True)(REFERENCE, prediction) == {
        "rouge1": 0.0,
        "rouge2": 0.0,
        "rougeL": 0.0,
    }


def test_summarize_metric_reads_bootstrap_settings():
    summary = summarize_metric([0.1, 0.2, 0.3, 0.4], {"resamples": 500, "confidence": 0.95, "seed": 7})
    assert summary["mean"] == pytest.approx(0.25)
    assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]


def test_summarize_metric_needs_scores_and_two_for_an_interval():
    with pytest.raises(ValueError, match="no scores"):
        summarize_metric([], {"resamples": 10, "confidence": 0.9, "seed": 0})
    single = summarize_metric([0.3], {"resamples": 10, "confidence": 0.9, "seed": 0})
    assert single == {"mean": 0.3, "ci_low": None, "ci_high": None}
