"""Lazily compiled patterns and their literal prefixes (a necessary condition for a match)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alma_hooks import redact
from alma_hooks.learning import outcomes, preferences
from alma_hooks.patterns import LazyPattern, lazy, literal_prefix


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("sk-ant-[a-z]+", "sk-ant-"),
    (r"sk\-ant\-(?<![A-Za-z0-9_]sk\-ant\-)x", "sk-ant-"),
    (r"https://hooks\.slack\.com/(?:a|b)", "https://hooks.slack.com/"),
    ("secret_?key", "secret"),      # the '_' may occur zero times
    ("ab*c", "a"),
    ("ab{2}", "a"),
    ("abc|xyz", ""),                # a match may start with either branch
    ("ab(?:c|d)", "ab"),            # an alternation inside a group is after the prefix
    ("a[|]b|c", ""),
    ("ab[|]c", "ab"),
    (r"\d+x", ""),
    (r"ab\bc", "ab"),
    (r"a\\b", "a\\b"),
    ("(?i)abc", ""),
    ("^abc", ""),
    (".abc", ""),
    ("", ""),
], ids=lambda v: repr(v))
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


def test_case_insensitive_and_verbose_patterns_have_no_prefix() -> None:
    assert lazy("abc", re.I).prefix == "" and lazy("a b c", re.X).prefix == ""


def test_a_lazy_pattern_compiles_on_first_use_and_then_is_the_pattern() -> None:
    p = lazy(r"(?P<word>\w+)@example\.com")
    assert "search" not in vars(p)  # nothing compiled yet
    assert p.search("mail bob@example.com").group("word") == "bob"
    assert vars(p)["search"].__self__.pattern == r"(?P<word>\w+)@example\.com"
    assert p.sub("x", "a@example.com b") == "x b" and p.groupindex == {"word": 1}


def _module_patterns() -> list[LazyPattern]:
    found = []
    for module in (redact, preferences, outcomes):
        for value in vars(module).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                pattern = getattr(item, "pattern", item)
                if isinstance(pattern, LazyPattern):
                    found.append(pattern)
    return found


PATTERNS = _module_patterns()
TEXT = st.lists(st.sampled_from(list("skant-_ghpAKIAeyJ.:/=?&~Q0123456789xX <>\n\"'") + [
    "sk-ant-", "AKIA", "ghp_", "eyJ", "://", "sig=", "-----BEGIN", "<private>", "secret_key=", "Authorization: Bearer ",
    "a" * 20]), max_size=120).map("".join)


def test_the_detectors_patterns_are_lazy() -> None:
    assert len(PATTERNS) > 60
    assert sum(1 for p in PATTERNS if p.prefix) > 25


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_every_match_starts_with_its_patterns_prefix(text: str) -> None:
    for p in PATTERNS:
        if p.prefix:
            for m in re.compile(*p._args).finditer(text):
                assert text.startswith(p.prefix, m.start()), (p, text)
