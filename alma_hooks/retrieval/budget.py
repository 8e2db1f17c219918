r"""Token budget: estimate tokens, quote memory text, pack and render a memory slice.

This module runs inside latency-critical hook processes, so it uses the
standard library only (``re``, ``unicodedata``, ``math``): no tokenizer, no numpy.

Token estimate
--------------
No Claude tokenizer is available offline, so :func:`estimate_tokens` is a
conservative estimate built to over- rather than under-count: the budget is a
hard cap, and an over-count only leaves a little context unused.

The text is split into runs of one character class; each run costs:

====================================  =====================================================
run                                   tokens
====================================  =====================================================
ASCII letters ``[A-Za-z]+``           ceil(n/3): English words average ~1.3 tokens and
                                      words of up to 3 letters are one
digits ``[0-9]+``                     ceil(n/2): tokenizers split numbers into 1-3 digits
letters and digits mixed              max(the two rules above per part, ceil(3n/4)):
(``9f86d0``, ``eyJhbGci``)            hashes, ids and base64 tokenize at ~1.3-2 chars/token
one space or tab                      0: BPE pre-tokenizers glue one leading space to the
                                      next word, number or symbol run
longer space/tab runs                 ceil(n/4)
newline (``\n``, ``\r``, ``\r\n``)    1 each
other ASCII (punctuation, symbols)    1 each; real vocabularies often merge ``":``, ``->``
U+0080-U+052F (Latin-1, Latin         1 per character: accented letters and these scripts
Extended, IPA, Greek, Cyrillic)       are well merged in practice
General Punctuation U+2000-U+206F     2 each: curly quotes, dashes, ``…`` are usually one
CJK ideographs, kana, bopomofo, CJK   ceil(5n/4): common characters are one token, rarer
and fullwidth punctuation             ones fall back to 2-3 byte tokens
Hangul syllables and jamo             2 each: Korean is expensive in BPE vocabularies
anything else (emoji, symbols, other  its UTF-8 byte count: a byte-level BPE never needs
scripts, combining marks)             more tokens than bytes
====================================  =====================================================

The sum is the word/symbol-based estimate. A character-based estimate,
ceil(ASCII characters / 3) plus the same non-ASCII costs, guards against ASCII
text the run rules under-count (published ratios: English prose ~4 characters
per token, code ~3). The result is the larger of the two.

Measured on the 25 samples of ``tests/retrieval/test_budget.py`` against the
bert-base WordPiece tokenizer (a lower bound: it also splits at every space and
symbol), the estimate is 1.04x-1.66x the WordPiece count, median 1.26x, for
everything but emoji, which WordPiece maps to a single ``[UNK]``. Against the
published ratios it is 1.4x-1.6x for prose (len/4) and 1.2x-2.2x for code and
JSON (len/3), the high end for hashes and base64.

The estimate is additive over lines: ``estimate_tokens(a + "\n" + b) <=
estimate_tokens(a) + 1 + estimate_tokens(b)``, since no run crosses a newline
and ceil is subadditive. :func:`render_slice` packs with those per-line sums
and then checks the whole text once.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

from alma_hooks.types import (
    AntiPattern,
    DomainKnowledge,
    Heuristic,
    Hit,
    Memory,
    MemorySlice,
    Outcome,
    Preference,
    SliceItem,
)

MAX_BUDGET = 2000
DEFAULT_BUDGET = 1000
DEFAULT_TITLE = "Memory from past sessions (alma-hooks)"

# Each rule is counted by one regex pass in C (a match per token: ``[A-Za-z]{1,3}``
# matches ceil(n/3) times in a run of n letters), because a Python loop over
# matches costs several milliseconds per slice in the hook. The patterns avoid
# large Unicode classes, which take milliseconds to compile in every hook process;
# non-ASCII runs are classified per character in _wide_cost (they are rare).
_LETTER_TOKENS = re.compile(r"[A-Za-z]{1,3}")
_DIGIT_TOKENS = re.compile(r"[0-9]{1,2}")
_BLANK_RUNS = re.compile(r"[ \t]{2,}")  # one space is free, so only longer runs count
_NEWLINES = re.compile(r"\r\n|[\n\r]")
_OTHER_ASCII = re.compile(r"[^A-Za-z0-9 \t\n\r\x80-\U0010ffff]")
_WIDE_RUNS = re.compile(r"[^\x00-\x7f]+")
_MIXED_RUNS = re.compile(r"(?<![A-Za-z0-9])(?:[0-9]+[A-Za-z]|[A-Za-z]+[0-9])[A-Za-z0-9]*")

# Hangul syllables and jamo: 2 tokens each (Korean is expensive in BPE vocabularies).
_HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))
# CJK ideographs (with extension A, compatibility and supplementary planes), kana,
# bopomofo, CJK symbols and punctuation, fullwidth forms: 5/4 tokens each.
_CJK = ((0x2E80, 0x2FDF), (0x3000, 0x312F), (0x3190, 0x9FFF), (0xF900, 0xFAFF),
        (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x20000, 0x3FFFF))


def _mixed_extra(text: str) -> int:
    """What letters-and-digits runs (hashes, ids, base64) cost beyond their parts.

    Such runs tokenize at ~1.3-2 characters per token, far worse than words, so
    a run of n costs at least ceil(3n/4).
    """
    extra = 0
    for run in _MIXED_RUNS.findall(text):
        parts = len(_LETTER_TOKENS.findall(run)) + len(_DIGIT_TOKENS.findall(run))
        extra += max(0, (3 * len(run) + 3) // 4 - parts)
    return extra


def _wide_cost(run: str) -> int:
    """Tokens of a run of non-ASCII characters (see the table in the module docstring)."""
    cost = 0
    cjk = 0
    for c in run:
        o = ord(c)
        if o <= 0x52F:
            cost += 1
        elif 0x2000 <= o <= 0x206F:
            cost += 2
        elif any(lo <= o <= hi for lo, hi in _HANGUL):
            cost += 2
        elif any(lo <= o <= hi for lo, hi in _CJK):
            cjk += 1
        else:
            cost += 2 if o < 0x800 else 3 if o < 0x10000 else 4  # UTF-8 length
    return cost + (5 * cjk + 3) // 4


def estimate_tokens(text: str) -> int:
    """A conservative (over-counting) estimate of Claude tokens in ``text``; see the module docstring."""
    if not text:
        return 0
    ascii_chars = len(text)
    wide_cost = 0  # cost of the non-ASCII runs, the same in both estimates
    if not text.isascii():
        for run in _WIDE_RUNS.findall(text):
            ascii_chars -= len(run)
            wide_cost += _wide_cost(run)
    digit_cost = len(_DIGIT_TOKENS.findall(text))
    ascii_cost = (
        len(_LETTER_TOKENS.findall(text))
        + digit_cost
        + sum((len(run) + 3) // 4 for run in _BLANK_RUNS.findall(text))
        + len(_NEWLINES.findall(text))
        + len(_OTHER_ASCII.findall(text))
    )
    if digit_cost:
        ascii_cost += _mixed_extra(text)
    return wide_cost + max(ascii_cost, (ascii_chars + 2) // 3)


def clamp_budget(n: float) -> int:
    """A token budget forced into ``0..MAX_BUDGET`` (NaN counts as 0)."""
    if n != n or n <= 0:
        return 0
    if n >= MAX_BUDGET:
        return MAX_BUDGET
    return int(n)


# --- quoting -----------------------------------------------------------------

# Invisible characters that can carry hidden text ("ASCII smuggling" with tag
# characters, data hidden in variation selectors); category C is removed separately.
_INVISIBLE = re.compile("[\ufe00-\ufe0f\U000e0000-\U000e01ef]")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
_SPACE = re.compile(r"\s+")
# Lookalikes that NFKC does not fold back (fullwidth ＜ would normalise to <).
_NEUTRAL = str.maketrans({"<": "\u2039", ">": "\u203a", "{": "\u2983", "}": "\u2984"})
_ELLIPSIS = "\u2026"


def _strip_controls(text: str) -> str:
    text = _ASCII_CONTROL.sub("", text)
    if text.isascii():
        return text
    text = _INVISIBLE.sub("", text)
    # Cc/Cf/Cs/Co/Cn: controls, bidi overrides, zero-width chars, lone surrogates.
    return "".join(c for c in text if c.isascii() or c.isspace() or unicodedata.category(c)[0] != "C")


def quote_memory_text(text: str, limit: int = 300) -> str:
    """Render stored memory text as inert data on one line, at most ``limit`` characters.

    Memories come from past sessions and may hold anything a tool printed, so
    the text must not be able to change the structure of the slice it is put
    in: NFKC-normalise (so fullwidth lookalikes cannot turn back into ``<``),
    drop control and invisible characters, collapse all whitespace (newlines
    included) to single spaces so no line can start a heading or a new turn,
    replace ``< >`` (role or system tags) and ``{ }`` (hook JSON) by
    lookalikes, escape a leading ``#``, then cut on a word boundary with ``…``.
    """
    if limit <= 0 or not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = _strip_controls(text)
    text = _SPACE.sub(" ", text).strip().translate(_NEUTRAL)
    if text.startswith("#"):
        text = "\\" + text
    return _cap(text, limit)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit == 1:
        return _ELLIPSIS
    head = text[: limit - 1]
    cut = head.rfind(" ")
    # Cut at the last space unless that throws away more than half the text
    # (one very long token, e.g. a URL or a hash).
    if cut > (limit - 1) // 2 and text[limit - 1] != " ":
        head = head[:cut]
    return head.rstrip(" ,;:") + _ELLIPSIS


# --- rendering ---------------------------------------------------------------

_SECTIONS: tuple[tuple[str, type[Memory]], ...] = (
    ("Heuristics", Heuristic),
    ("Avoid", AntiPattern),
    ("Preferences", Preference),
    ("Project knowledge", DomainKnowledge),
    ("Similar past tasks", Outcome),
)
_HEADINGS = tuple(f"## {name}" for name, _ in _SECTIONS)
_HEADING_COSTS = tuple(estimate_tokens(h) for h in _HEADINGS)
_MIN_ITEM_COST = estimate_tokens("- x") + 1  # the cheapest line there can be, with its newline


def _section_of(memory: Memory) -> int | None:
    for i, (_, cls) in enumerate(_SECTIONS):
        if isinstance(memory, cls):
            return i
    return None


def _line(memory: Memory) -> str | None:
    """The bullet line of one memory, or None when its main text quotes to nothing."""
    q = quote_memory_text
    if isinstance(memory, Heuristic):
        condition, strategy = q(memory.condition), q(memory.strategy)
        if not strategy:
            return None
        evidence = f"{memory.successes}/{memory.trials} successes, " if memory.trials else ""
        head = f"When {condition}: {strategy}" if condition else strategy
        return f"- {head} ({evidence}conf {memory.confidence:.2f})"
    if isinstance(memory, AntiPattern):
        pattern, why, alternative = q(memory.pattern), q(memory.why), q(memory.alternative)
        if not pattern:
            return None
        text = f"{pattern} fails because {why}" if why else f"{pattern} fails"
        if alternative:
            text += f"; instead {alternative}"
        return f"- {text} (seen {memory.occurrence_count}x)"
    if isinstance(memory, Preference):
        text = q(memory.preference)
        return f"- {text}" if text else None
    if isinstance(memory, DomainKnowledge):
        text = q(memory.fact)
        return f"- {text}" if text else None
    if isinstance(memory, Outcome):
        task, strategy = q(memory.task_description), q(memory.strategy_used)
        if not task:
            return None
        result = "success" if memory.success else "failure"
        return f"- {task} -> {strategy}: {result}" if strategy else f"- {task}: {result}"
    return None


def _ranked(hits: Sequence[Hit]) -> list[Hit]:
    """Hits by score descending (input order breaks ties, NaN last), one per memory id."""
    def key(pair: tuple[int, Hit]) -> tuple[float, int]:
        i, hit = pair
        score = hit.score
        return (-score if score == score else math.inf, i)

    seen: set[str] = set()
    out = []
    for _, hit in sorted(enumerate(hits), key=key):
        if hit.memory.id not in seen:
            seen.add(hit.memory.id)
            out.append(hit)
    return out


def _compose(title_line: str, chosen: list[tuple[int, SliceItem]]) -> tuple[str, list[SliceItem]]:
    """The slice text (title, then each used section's heading and lines) and its items in text order."""
    lines = [title_line]
    items: list[SliceItem] = []
    for section, heading in enumerate(_HEADINGS):
        section_items = [item for s, item in chosen if s == section]
        if section_items:
            lines.append(heading)
            lines.extend(item.line for item in section_items)
            items.extend(section_items)
    return "\n".join(lines), items


def render_slice(hits: Sequence[Hit], budget: int, *, title: str = DEFAULT_TITLE) -> MemorySlice:
    """Pack the best hits into ``budget`` tokens and render them as compact Markdown.

    Hits are taken by score, highest first, across types; an item is added only
    if the whole slice still fits, otherwise it is dropped whole (never cut) and
    a later, smaller item may still fit. Sections come in a fixed order, items
    within one by score; ``items`` follow the text. ``tokens`` of the result is
    ``estimate_tokens(text)`` and never exceeds the (clamped) budget. No hit
    that fits gives an empty slice with text ``""``.
    """
    budget = clamp_budget(budget)
    title_line = f"# {title}"
    title_cost = estimate_tokens(title_line)
    chosen: list[tuple[int, SliceItem]] = []  # (section, item), in score order
    used_sections: set[int] = set()
    # Upper bound of estimate_tokens(text): per-line estimates plus one per joining newline.
    cost = title_cost
    for hit in _ranked(hits) if budget > title_cost else ():
        if budget - cost < _MIN_ITEM_COST:
            break
        section = _section_of(hit.memory)
        line = _line(hit.memory) if section is not None else None
        if line is None:
            continue
        heading_cost = 0 if section in used_sections else _HEADING_COSTS[section] + 1
        # estimate_tokens(s) >= len(s) / 3: skip the scan when the line cannot fit anyway.
        if cost + heading_cost + (len(line) + 2) // 3 + 1 > budget:
            continue
        item_cost = estimate_tokens(line) + 1
        extra = item_cost + heading_cost
        if cost + extra > budget:
            continue
        cost += extra
        used_sections.add(section)
        chosen.append((section, SliceItem(memory=hit.memory, score=hit.score, line=line, tokens=item_cost)))

    # The per-line sum bounds the whole text's estimate; recheck the real text anyway
    # and drop the lowest-scored item until it fits, so the cap holds whatever the estimator does.
    while chosen:
        text, items = _compose(title_line, chosen)
        tokens = estimate_tokens(text)
        if tokens <= budget:
            break
        chosen.pop()
    if not chosen:
        return MemorySlice(items=[], budget=budget, text="", tokens=0)
    assert tokens <= budget, "a memory slice must never exceed its token budget"
    return MemorySlice(items=items, budget=budget, text=text, tokens=tokens)
