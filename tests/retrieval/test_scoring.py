"""Ranking arithmetic: recency half-life, Wilson lower bound, fusion of the two lists."""

from __future__ import annotations

import itertools

import pytest

from alma_hooks.retrieval.scoring import DAY, Weights, final_score, fuse, recency, success_rate, wilson_lower_bound
from alma_hooks.retrieval.search import VECTOR_FLOOR, fusion_signals
from alma_hooks.types import DomainKnowledge, Heuristic, Hit

NOW = 1_750_000_000.0


def fact(text: str, *, age_days: float = 0.0, context: str = "") -> DomainKnowledge:
    when = NOW - age_days * DAY
    return DomainKnowledge(project_id="p", fact=text, context=context, created_at=when, updated_at=when)


# --- recency -------------------------------------------------------------------

@pytest.mark.parametrize("age_days, expected", [(0, 1.0), (30, 0.5), (60, 0.25), (90, 0.125)],
                         ids=["now", "one-half-life", "two-half-lives", "three-half-lives"])
def test_recency_halves_every_half_life(age_days, expected):
    assert recency(fact("x", age_days=age_days), NOW, 30) == pytest.approx(expected)


def test_recency_counts_from_the_last_validation_when_it_is_newer():
    old = NOW - 90 * DAY
    h = Heuristic(project_id="p", condition="c", strategy="s", created_at=old, updated_at=old,
                  last_validated=NOW - 30 * DAY)
    assert recency(h, NOW, 30) == pytest.approx(0.5)


def test_recency_of_a_future_timestamp_is_capped_at_one():
    assert recency(fact("x", age_days=-5), NOW, 30) == 1.0


# --- success -------------------------------------------------------------------

def test_wilson_ranks_little_evidence_below_much():
    assert wilson_lower_bound(2, 2) < wilson_lower_bound(40, 45)
    assert wilson_lower_bound(2, 2) == pytest.approx(0.342, abs=0.01)
    assert wilson_lower_bound(40, 45) == pytest.approx(0.766, abs=0.01)


@pytest.mark.parametrize("successes, trials", [(0, 0), (0, 5), (5, 5), (3, 10)],
                         ids=["none", "all-failed", "all-succeeded", "mixed"])
def test_wilson_is_a_lower_bound_of_the_observed_rate(successes, trials):
    lb = wilson_lower_bound(successes, trials)
    assert 0.0 <= lb <= (successes / trials if trials else 0.0)


def test_success_rate_of_a_heuristic_is_smoothed():
    h = Heuristic(project_id="p", condition="c", strategy="s", successes=7, trials=8)
    assert success_rate(h) == pytest.approx(8 / 10)
    assert success_rate(fact("x")) == 0.5


# --- fusion --------------------------------------------------------------------

GRID = [None, 0.0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.9, 1.0]


def test_fuse_is_monotone_in_each_signal_and_bounded():
    for sim, lex in itertools.product(GRID, GRID):
        f = fuse(sim, lex)
        assert 0.0 <= f <= 1.0
        for sim2 in GRID:
            if sim is not None and sim2 is not None and sim2 >= sim:
                assert fuse(sim2, lex) >= f, (sim, sim2, lex)
        for lex2 in GRID:
            if lex is not None and lex2 is not None and lex2 >= lex:
                assert fuse(sim, lex2) >= f, (sim, lex, lex2)


def test_fuse_rewards_agreement_and_absent_signals_count_as_nothing():
    assert fuse(None, None) == 0.0
    assert fuse(0.6, 0.5) > max(fuse(0.6, None), fuse(None, 0.5))
    assert fuse(0.05, None) == 0.0  # below MiniLM's "unrelated" level


def test_final_score_is_monotone_in_relevance():
    m = fact("x", age_days=10)
    w = Weights()
    scores = [final_score(m, r / 10, NOW, w, 30) for r in range(11)]
    assert scores == sorted(scores)


def test_fusion_signals_normalise_each_list_to_its_best_candidate():
    a, b, c = fact("deploy the release"), fact("release rollback steps"), fact("unrelated words")
    vec = [Hit(a, 0.7, 0.7), Hit(b, 0.5, 0.5), Hit(c, 0.2, 0.2)]
    lex = [Hit(b, 4.0), Hit(a, 2.0)]
    s = fusion_signals({"release", "rollback"}, vec, lex)
    assert s[a.id].vector == pytest.approx(1.0)
    assert s[b.id].vector == pytest.approx((0.5 - VECTOR_FLOOR) / (0.7 - VECTOR_FLOOR))
    assert s[c.id].vector == 0.0  # below the floor
    assert s[b.id].lexical == pytest.approx(1.0)  # best BM25, every query word present
    assert s[a.id].lexical == pytest.approx(0.5 * 0.5)  # half the BM25, half the words
    assert s[c.id].lexical == 0.0 and s[c.id].bm25 is None


def test_fusion_signals_count_context_words_as_present():
    with_ctx = fact("Yes, every Friday at five", context="When is the release train?")
    s = fusion_signals({"release", "train"}, [], [Hit(with_ctx, 3.0)])
    assert s[with_ctx.id].lexical == pytest.approx(1.0)
    assert s[with_ctx.id].relevance > 0.5


def test_fusion_signals_more_similar_means_more_vector_signal():
    mems = [fact(f"m{i}") for i in range(5)]
    sims = [0.9, 0.7, 0.5, 0.35, 0.1]
    s = fusion_signals(set(), [Hit(m, x, x) for m, x in zip(mems, sims)], [])
    vs = [s[m.id].vector for m in mems]
    assert vs == sorted(vs, reverse=True)
    rel = [s[m.id].relevance for m in mems]
    assert rel == sorted(rel, reverse=True)
