"""Spot standing instructions ("always use pnpm", "no emojis in code") in a user prompt.

Runs inside the UserPromptSubmit hook on every prompt, so it is a handful of
precompiled regular expressions and nothing else: no model, no I/O, stdlib only.

Precision comes first: a wrongly stored preference is injected into every later
session, while a missed one only costs the user repeating themselves. So a
sentence must *look* like a standing instruction (a standing marker such as
"always"/"from now on", a first-person preference, a "stop doing X", or a
correction "use X instead of Y") and must not look like a one-off task,
a question, reported speech, a quote, a log line, code, or a conditional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = ("tooling", "style", "testing", "communication", "workflow", "general")

#: Prompts longer than this are mostly pasted material: only their first and last sentence count.
LONG_PROMPT = 2000


@dataclass(frozen=True)
class DetectedPreference:
    """A standing instruction found in a prompt.

    ``preference`` is the instruction as one clean sentence, ``category`` one of
    :data:`CATEGORIES`, ``subject`` a normalised key of what it is about
    (``"pnpm|npm"``, ``"emoji"``) that :func:`same_subject` compares.
    """

    category: str
    preference: str
    subject: str


# --------------------------------------------------------------------------- vocabulary

# Base forms of verbs that start an instruction to a coding agent. A clause that a
# standing marker ("from now on", "in this repo") leads or trails must start with one.
_VERBS = frozenset("""
    abbreviate add align annotate answer apply ask assume avoid be break bump call capitalize
    capitalise check choose close comment commit configure create declare default delete deploy
    describe document edit end explain export expose extract follow force format generate give go
    hardcode ignore import include indent inline install keep label leave limit lint log make
    merge mock modify mutate name nest open output pass pin prefer prefix print pull push put
    quote raise rebase reference regenerate remove rename reply report respond return reuse review
    run say separate show sign skip sort split squash stage start stash stick store suppress swallow
    switch tag talk tell test throw touch type update use verify wait wrap write summarize summarise
    delete drop rewrite refactor fix translate cite link mention flag warn announce emit catch handle
    reply prompt confirm guess invent hallucinate assume spell validate sanitize escape encode
    sleep retry loop block bypass disable enable
""".split())

# Verbs that start one-off requests even after "don't"/"never": "don't worry", "never mind".
_NOT_INSTRUCTION = frozenset("""
    mind worry forget thought gonna again ever before been had was were did got knew saw is are
    worked happened a an the this that it in on at for to with from by of about after once too
""".split())

_PAST_ED_OK = frozenset({"need", "embed", "proceed", "exceed", "succeed", "feed", "seed", "speed", "shed"})

# Mass nouns and language names that make "don't use X in <context>" a general rule.
_GENERIC_CONTEXTS = frozenset("""
    code production prod ci general typescript javascript python go golang rust java kotlin
    swift ruby php sql bash shell css html yaml json markdown react vue svelte docs
    documentation prose
""".split())

_REPO_NOUNS = r"(?:repo|repository|project|codebase|monorepo|workspace|team|company|org|organi[sz]ation|app|service)"

_APOS = r"['\u2019]"

# Leading words that carry no instruction: "btw", "ok so", "thanks, that works".
_FILLER = re.compile(
    r"^(?:btw|by the way|fyi|ok(?:ay)?|alright|right|so|also|and|oh|hey|hi|one more thing|another thing|"
    r"quick note|note|ps|p\.s\.|important|reminder|just|thanks|thank you|cool|great|perfect|nice|"
    r"looks good|that works|got it|sounds good|remember that|note that|keep in mind that|"
    r"for the record|as i said|like i said|i told you to|i said)\b[\s,:;.!\-]*",
    re.I,
)
_CORRECTION = re.compile(r"^(?:no+|nope|nah|wrong|actually|not like that|not quite)(?:[\s,.!]+no+)?\b[\s,:;.!\-]+", re.I)

# --------------------------------------------------------------------------- sentence filters

_QUESTION_START = re.compile(
    rf"^(?:should|shall|do(?!\s+not\b)(?!n{_APOS}t)|does|did|can|could|would|will|is|are|was|were|"
    rf"what|what{_APOS}s|whats|why|how|which|who|where|isn{_APOS}t|aren{_APOS}t|doesn{_APOS}t|any idea)\b",
    re.I,
)
_CONDITIONAL_START = re.compile(
    r"^(?:if|in case|unless|assuming|suppose|supposing|what if|when|once|after|before|while)\b", re.I
)
_HEDGE = re.compile(r"\b(?:maybe|perhaps|might|not sure|i guess|wondering|what about|how about)\b", re.I)
_REPORTED = re.compile(
    r"\b(?:says|said|told|tells|according to|commented|mentioned|wrote|recommends|recommended|"
    r"suggests|suggested|claims|claimed|wants (?:us|me|you) to|asked (?:us|me) to)\b"
    r"|\b(?:docs|documentation|readme|guide|article|people|everyone|they|he|she)\s+(?:say|recommend|suggest)\b",
    re.I,
)
_ONE_OFF = re.compile(
    rf"\b(?:for now|for the moment|for the time being|this time|just this once|this once|right now|"
    rf"temporarily|today|yet|at the moment|for this (?!{_REPO_NOUNS}\b)\w+|"
    rf"in this (?:pr|branch|commit|file|function|change|ticket|task|session|component|test|case|script)\b)",
    re.I,
)
# A specific spot ("on the settings page", "in that file") marks a one-off edit.
_LOCATION = re.compile(
    r"\b(?:in|on|at|from|to|inside)\s+(?:the|this|that)\s+(?:[\w.-]+\s+){0,2}"
    r"(?:file|page|function|method|class|component|module|endpoint|screen|modal|test|line|branch|pr|"
    r"script|dockerfile|header|footer|form|button|view|route|handler|query|table|helper)\b",
    re.I,
)
_DEICTIC = re.compile(rf"\b(?:this|that|these|those)\b(?!\s+{_REPO_NOUNS}\b)|\b(?:the (?:other|gray|grey|same) one)\b", re.I)
# Log, compiler and linter lines; code comments; shell and quote lines.
_LOG_OR_CODE = re.compile(
    r"^(?:[\w.\-\[\]]*(?:error|warning|warn|exception|info|debug|fatal|notice)\b.*?:|npm (?:warn|err!?)|"
    r"ts\d+|e\d{3,4}\b|eslint|ruff|mypy|flake8|pylint|traceback|file \"|"
    r"//|/\*|\*|#|--|>|\$|%|def |class |const |let |var |export |import |from \S+ import)",
    re.I,
)

# --------------------------------------------------------------------------- instruction patterns

# "always"/"never" and their long forms, at the start of a clause.
_ALWAYS_LEAD = re.compile(
    rf"^(?:please\s+)?(?:(?:make sure|be sure)\s+(?:to|you)\s+|remember to\s+|"
    rf"(?:you|we)\s+(?:should|must|need to)\s+|i(?:{_APOS}d| would)?\s+(?:want|need|like)\s+you\s+to\s+)?"
    rf"(?:please\s+)?(always|never(?:\s+ever)?|don{_APOS}t\s+ever|do\s+not\s+ever|dont\s+ever)\s+([\w-]+)",
    re.I,
)
_WE_HABIT = re.compile(r"^we\s+(?:always|never|only|generally|usually)?\s*(\w+)\b", re.I)
_STANDING_MARKER = re.compile(
    rf"\b(?:from now on|from here on(?: out)?|going forward|moving forward|in (?:the )?future|"
    rf"for future reference|by default|as a (?:general )?rule|in (?:this|our|the) {_REPO_NOUNS}|"
    rf"in all (?:new |future )?\w+|for all (?:new |future )?\w+|in new code|from today on)\b",
    re.I,
)
_EDGE_AFTER = re.compile(r"^\s*(?:[,.!;:\-]|$)")
_HABITUAL_LEAD = re.compile(r"^(?:whenever|every time|each time|any ?time)\b[^,]*,\s*", re.I)
_FIRST_PERSON = re.compile(
    rf"^(?:i|we)(?:\s+(?:really\s+|strongly\s+|generally\s+|usually\s+|personally\s+|much\s+|definitely\s+|also\s+)?"
    rf"(?:prefer|would\s+prefer|would\s+rather)|{_APOS}d\s+(?:much\s+)?(?:prefer|rather))\b(?!\s+not\b)"
    rf"|^i\s+(?:really\s+|much\s+)?like\s+.+?\s+(?:better|more)\b"
    rf"|^i\s+(?:hate|dislike|don{_APOS}t\s+like|do\s+not\s+like|can{_APOS}t\s+stand)\s+(?:it\s+)?when\s+you\s+\w+",
    re.I,
)
_STOP_DOING = re.compile(r"^(?:please\s+)?(?:stop|quit)\s+(\w+ing)\b", re.I)
_COMPARATOR = r"(?:instead\s+of|rather\s+than|over|not)"
_SWAP = re.compile(
    rf"^(?:please\s+)?(?:just\s+)?(use|prefer|pick|choose|go\s+with|stick\s+(?:to|with)|write|call|"
    rf"import|name|return|run|format|put|\w+)\s+(.+?)\s*,?\s+{_COMPARATOR}\s+(.+)$",
    re.I,
)
_SWAP_BARE = re.compile(r"^(?:please\s+)?(?:just\s+)?(\w+)\s+(.+?)\s+instead\b[.!]?$", re.I)
_DONT = re.compile(rf"^(?:please\s+)?(?:don{_APOS}t|do\s+not|dont)\s+(?:ever\s+)?(\w+)\b", re.I)
_NO_THING = re.compile(r"^no\s+(?:more\s+)?(?![,.!])\S", re.I)
_GENERIC_SCOPE = re.compile(
    r"\b(?:ever|anymore|any more|again|anywhere|at all|under any circumstances)\b"
    r"|\b(?:every|each|any|all)\s+\w+",
    re.I,
)
_CONTEXT_PHRASE = re.compile(
    r"\b(?:in|for|on|inside|within)\s+(?:(?:any|all|every|our|your|new|committed|production)\s+)?"
    r"(?:[\w-]+\s+)?([\w-]+)\b",
    re.I,
)
_ALTERNATIVE = re.compile(r"[,;]\s*(?:just\s+)?(?:use|prefer|go with|stick with)\b", re.I)
_YOUR_OUTPUT = re.compile(
    r"^(?:please\s+)?(?:keep|make|write|format|end|start|sign|limit|put|structure|wrap|shorten)\s+"
    r"(?:all\s+)?your\s+(?:\w+\s+)?(?:answers|responses|replies|explanations|summaries|messages|output|"
    r"comments|prs|pull requests)\b",
    re.I,
)
_QUANTIFIED = re.compile(
    r"^(?:please\s+)?(use|prefer|name|keep|format|put|stick|follow|avoid|indent|pin|spell|capitalize|"
    r"prefix|wrap)\b.*\b(?:for|in|on|to|with)\s+(?:all|every|each|any)\s+\w+",
    re.I,
)
_AVOID = re.compile(r"^(?:please\s+)?avoid\s+\w+", re.I)

# Strong rules need no further evidence; weak ones must also pass the one-off checks.
_STRONG, _WEAK = 2, 1


# --------------------------------------------------------------------------- public API


def detect_preference(prompt: str) -> DetectedPreference | None:
    """The standing instruction in ``prompt``, or None when it holds none (or it is unclear)."""
    if not prompt or prompt.lstrip().startswith("<task-notification>"):
        return None
    masked, restore = _mask(_strip_blocks(prompt))
    sentences = _sentences(masked)
    if len(prompt) > LONG_PROMPT:
        sentences = sentences[:1] + sentences[-1:] if len(sentences) > 1 else sentences
    best: tuple[int, str] | None = None
    for sentence in sentences:
        strength = _sentence_strength(sentence)
        if strength and (best is None or strength > best[0]):
            best = (strength, sentence)
    if best is None:
        return None
    statement = _normalise(best[1])
    if len(statement.split()) < 2:
        return None
    text = restore(statement)
    return DetectedPreference(category=_category(text), preference=text, subject=_subject(statement, restore))


def same_subject(a: DetectedPreference, b: DetectedPreference) -> bool:
    """True when ``b`` is about the same thing as ``a``, so the newer one supersedes the older."""
    left = {_canonical(part) for part in a.subject.split("|") if part}
    right = {_canonical(part) for part in b.subject.split("|") if part}
    return bool(left & right)


# --------------------------------------------------------------------------- text preparation

_TAGGED_BLOCK = re.compile(r"<([a-z][\w-]*)(?:\s[^>]*)?>.*?</\1>", re.S)
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_DOUBLE_QUOTED = re.compile(r"\"[^\"\n]+\"|\u201c[^\u201d\n]+\u201d")
_SINGLE_QUOTED = re.compile(r"(?<!\w)['\u2018]((?:[^'\u2019\n]|(?<=\w)['\u2019](?=\w))+)['\u2019](?!\w)")
_PLACEHOLDER = re.compile(r"zzq(\d+)zz")


def _strip_blocks(prompt: str) -> str:
    """Drop fenced code and system-injected tagged blocks; their words are not the user's."""
    return _FENCE.sub("\n", _TAGGED_BLOCK.sub("\n", prompt))


def _mask(text: str):
    """Replace inline code and quotations by placeholders so their words never match a rule."""
    saved: list[str] = []

    def keep(match: re.Match) -> str:
        saved.append(match.group(0))
        return f"zzq{len(saved) - 1}zz"

    for pattern in (_INLINE_CODE, _DOUBLE_QUOTED, _SINGLE_QUOTED):
        text = pattern.sub(keep, text)

    def restore(masked: str) -> str:
        return _PLACEHOLDER.sub(lambda m: saved[int(m.group(1))], masked)

    return text, restore


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    """Split into sentences; a one-word tail ("Ever.", "Thanks!") joins the sentence before it."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if not piece:
            continue
        if out and len(piece.split()) == 1 and not out[-1].endswith("?"):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _strip_fillers(text: str) -> tuple[str, bool]:
    """Remove leading filler words; also report whether a correction ("no, ...") led the text."""
    corrected = False
    while True:
        before = text
        text = _FILLER.sub("", text, count=1)
        stripped = _CORRECTION.sub("", text, count=1)
        corrected = corrected or stripped != text
        text = stripped
        if text == before:
            return text.strip(), corrected


_CLAUSE_SPLIT = re.compile(r"[,;:]\s+|\s+[-\u2013\u2014]+\s+")


def _clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSE_SPLIT.split(sentence) if c.strip()]


# --------------------------------------------------------------------------- recognition


def _sentence_strength(sentence: str) -> int:
    """How surely this sentence is a standing instruction: 0 (not one), weak or strong."""
    body = sentence.strip()
    if _LOG_OR_CODE.match(body):
        return 0
    body, corrected = _strip_fillers(body)
    if not body or _rejected(body):
        return 0
    if _marker_rule(body):
        return _STRONG
    for index, clause in enumerate(_clauses(body)):
        clause, clause_corrected = _strip_fillers(clause)
        rest = body[body.find(clause):] if index else body
        rest, _ = _strip_fillers(rest)
        strength = _clause_strength(rest, corrected or clause_corrected)
        if strength == _WEAK and _one_off(body):
            strength = 0
        if strength:
            return strength
    return 0


def _rejected(body: str) -> bool:
    """Questions, conditionals, hedges and reported speech are never standing instructions."""
    if body.rstrip(" .!)").endswith("?") or _QUESTION_START.match(body):
        return True
    if _HEDGE.search(body) or _REPORTED.search(body):
        return True
    # "when/once/after ..." may lead a standing rule only with an explicit "always"/"never".
    if _CONDITIONAL_START.match(body):
        return not re.match(r"^when\b[^,]*,\s*(?:please\s+)?(?:always|never)\b", body, re.I)
    return False


def _one_off(body: str) -> bool:
    return bool(_ONE_OFF.search(body) or _LOCATION.search(body) or _DEICTIC.search(body))


def _clause_strength(text: str, corrected: bool) -> int:
    """Match one clause (running to the end of its sentence) against the instruction patterns."""
    if _always_rule(text) or _FIRST_PERSON.match(text) or _habit_rule(text):
        return _STRONG if not _ONE_OFF.search(text) else 0
    if _STOP_DOING.match(text) and not _STOP_DOING.match(text).group(1).lower().endswith("thing"):
        return _WEAK
    if _swap_rule(text, corrected):
        return _STRONG if corrected or text.lower().startswith(("prefer", "please prefer")) else _WEAK
    if _verb_swap(text, corrected):
        return _STRONG
    if _negation_rule(text):
        return _STRONG if re.search(r"\bever\b", text, re.I) else _WEAK
    if _YOUR_OUTPUT.match(text) or _QUANTIFIED.match(text):
        return _WEAK
    if _AVOID.match(text) and _has_generic_scope(text):
        return _WEAK
    return 0


def _always_rule(text: str) -> bool:
    """'always/never <verb>' at the start of the clause, the verb not a past or third-person form."""
    match = _ALWAYS_LEAD.match(text)
    return bool(match) and _looks_imperative(match.group(2))


def _looks_imperative(word: str) -> bool:
    word = word.lower()
    if word in _NOT_INSTRUCTION or not word.isalpha():
        return False
    if word.endswith("ed") and word not in _PAST_ED_OK:
        return False
    return not (word.endswith("s") and not word.endswith(("ss", "us", "is")))


def _habit_rule(text: str) -> bool:
    """'we always use X' / 'we never commit Y': a team habit stated as the rule to follow."""
    if not re.match(r"^we\s+(?:always|never|only)\b", text, re.I):
        return False
    match = _WE_HABIT.match(text)
    return bool(match) and match.group(1).lower() in _VERBS


def _imperative_start(text: str) -> bool:
    """Does ``text`` open with an instruction: a base verb, 'we use', 'you should', or a rule?"""
    text, _ = _strip_fillers(text)
    first = re.match(r"^(?:please\s+)?(?:(?:we|you)\s+(?:should\s+|must\s+|always\s+|never\s+)?)?(\w+)", text, re.I)
    if first and first.group(1).lower() in _VERBS:
        return True
    if re.match(r"^(?:every|all|each)\s+(?:new\s+)?[\w-]+(?:\s+[\w-]+)?\s+(?:needs?|must|should)\b", text, re.I):
        return True
    return _always_rule(text) or bool(_DONT.match(text) and _DONT.match(text).group(1).lower() in _VERBS)


def _marker_rule(body: str) -> bool:
    """A standing marker ("from now on", "in this repo") at a clause edge, next to an instruction."""
    habitual = _HABITUAL_LEAD.match(body)
    if habitual and _imperative_start(body[habitual.end():]):
        return not _ONE_OFF.search(body)
    for match in _STANDING_MARKER.finditer(body):
        after = body[match.end():]
        before = body[: match.start()]
        clause_start = max(before.rfind(","), before.rfind(";"), before.rfind(":"))
        leading = before[clause_start + 1:].strip() == ""
        if leading and _imperative_start(after.lstrip(" ,:;-")):
            return not _ONE_OFF.search(body)
        trailing = _EDGE_AFTER.match(after)
        if trailing and before.strip() and _imperative_start(before[clause_start + 1:].strip()):
            return not _ONE_OFF.search(body)
    return False


def _swap_rule(text: str, corrected: bool) -> bool:
    """'use X instead of Y' / 'X, not Y' / 'prefer X over Y'; bare 'use X instead' only after 'no,'."""
    match = _SWAP.match(text)
    if match:
        verb, new, old = match.group(1).lower(), match.group(2), _phrase_head(match.group(3))
        if verb not in _VERBS and not verb.startswith(("go", "stick")):
            return False
        if verb == "prefer" and " over " in f" {text.lower()} ":
            return True
        return _short_phrase(new) and _short_phrase(old) and not _DEICTIC.search(text)
    bare = _SWAP_BARE.match(text)
    return bool(corrected and bare and bare.group(1).lower() in _VERBS and _short_phrase(bare.group(2)))


def _phrase_head(phrase: str) -> str:
    """The words of ``phrase`` before its first preposition or clause break."""
    head = re.split(r"[,;]|[.!](?:\s|$)|\s+(?:for|in|on|at|when|because|since|with|to|from|so|unless)\s+", phrase, maxsplit=1)[0]
    return head.strip()


def _verb_swap(text: str, corrected: bool) -> bool:
    """'no, rebase instead of merge': after a correction, one action in place of another."""
    match = re.match(rf"^(\w+)\s+{_COMPARATOR}\s+(\w+)\W*$", text, re.I)
    return bool(corrected and match and match.group(1).lower() in _VERBS and match.group(2).lower() in _VERBS)


def _short_phrase(phrase: str) -> bool:
    words = phrase.split()
    return 0 < len(words) <= 5 and not re.search(r"\b(?:one|it|them)\b", phrase, re.I)


def _negation_rule(text: str) -> bool:
    """'don't <verb> X' with a general scope (ever, in code, every reply) or an alternative; 'no X in code'."""
    match = _DONT.match(text)
    if match:
        if match.group(1).lower() not in _VERBS:
            return False
        return bool(re.match(r"^(?:please\s+)?(?:don't|do not|dont)\s+ever\b", text, re.I)) or _has_generic_scope(
            text
        ) or bool(_ALTERNATIVE.search(text))
    return bool(_NO_THING.match(text)) and _has_generic_scope(text)


def _has_generic_scope(text: str) -> bool:
    """'ever', 'every reply', 'in code', 'in variable names': the rule is about all such cases."""
    if _GENERIC_SCOPE.search(text):
        return True
    for match in _CONTEXT_PHRASE.finditer(text):
        noun = match.group(1).lower()
        if noun in _GENERIC_CONTEXTS or _is_plural(noun):
            return True
    return False


def _is_plural(word: str) -> bool:
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "ous"))


# --------------------------------------------------------------------------- normalisation

_DROP_MARKERS = re.compile(
    rf"\s*,?\s*\b(?:from now on|from here on(?: out)?|going forward|moving forward|in the future|"
    rf"in future|for future reference|in (?:this|our|the) (?:repo|repository|project|codebase|monorepo))\b\s*,?",
    re.I,
)
_TRAILING_NOISE = re.compile(
    r"(?:[\s,]+(?:thanks|thank you|thx|ty|pls|please|ok\??|okay\??|lol|:\)|please don't|please do that))+[\s.!]*$"
    r"|[\s,.;:!]+$",
    re.I,
)
_LEAD_REWRITES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern, re.I), replacement)
    for pattern, replacement in (
        (r"^please\s+", ""),
        (rf"^(?:make sure|be sure)\s+(?:to|you)\s+(always|never)\b", r"\1"),
        (r"^remember to\s+(always|never)\b", r"\1"),
        (rf"^(?:you|we)\s+(?:should|must|need to)\s+(always|never)\b", r"\1"),
        (rf"^i(?:{_APOS}d| would)?\s+(?:want|need|like)\s+you\s+to\s+(always|never)\b", r"\1"),
        (r"^please\s+", ""),
        (rf"^(?:don{_APOS}t|do not|dont)\s+ever\b|^never\s+ever\b", "never"),
        (r"^we\s+(always|never)\s+", r"\1 "),
        (r"^we\s+use\b", "use"),
        (rf"^i(?:\s+really|\s+generally|\s+personally|\s+also)?\s+prefer\b|^i(?:{_APOS}d| would)\s+prefer\b", "prefer"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+you\s+didn{_APOS}t\b", "don't"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+have\b", "prefer"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+(?:you\s+)?", ""),
    )
)


def _normalise(sentence: str) -> str:
    """Turn a matched sentence into a clean imperative statement."""
    text, corrected = _strip_fillers(sentence.strip())
    text = _DROP_MARKERS.sub(",", f" {text}").strip(" ,")
    text, _ = _strip_fillers(text)
    lowered_start = text.lower()
    for pattern, replacement in _LEAD_REWRITES:
        text = pattern.sub(replacement, text, count=1)
    if lowered_start.startswith(("i'd rather have", "i would rather have", "i\u2019d rather have")):
        text = re.sub(r"\s+than\s+", " over ", text, count=1)
    elif re.match(rf"^i(?:{_APOS}d| would)\s+rather\b", lowered_start) and " rather than " not in text:
        text = re.sub(r"\s+than\s+", " rather than ", text, count=1)
    text = _rewrite_liking(text)
    if corrected:
        text = re.sub(r"^(use\s+\S+(?:\s+\S+)?)\s*,?\s+not\s+", r"\1 instead of ", text, count=1, flags=re.I)
    text = _TRAILING_NOISE.sub("", text)
    text = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", text)).strip(" ,")
    return text[:1].upper() + text[1:]


def _rewrite_liking(text: str) -> str:
    """'I like X better than Y' -> 'Prefer X over Y'; 'I hate when you V X' -> "Don't V X"."""
    liking = re.match(r"^i\s+(?:really\s+|much\s+)?like\s+(.+?)\s+(?:better|more)\b(?:\s+than\s+)?(.*)$", text, re.I)
    if liking:
        new, rest = liking.group(1), liking.group(2)
        return f"prefer {new} over {rest}" if rest and not rest.lower().startswith("for") else f"prefer {new} {rest}"
    hating = re.match(
        rf"^i\s+(?:hate|dislike|don{_APOS}t\s+like|do\s+not\s+like|can{_APOS}t\s+stand)\s+(?:it\s+)?when\s+you\s+([^,;]+)",
        text,
        re.I,
    )
    return f"don't {hating.group(1)}" if hating else text


# --------------------------------------------------------------------------- subject

_SUBJECT_LEAD = re.compile(
    rf"^(?:(?:always|never|don{_APOS}t|do not|dont|stop|quit|prefer|avoid|please|no|more|"
    rf"whenever you|every time you|each time you|when you|i hate when you)\s+)+",
    re.I,
)
_SUBJECT_STOP = frozenset("""
    in on at for to with from by of about before after when whenever unless if because and or but
    so than instead rather over not here there what which that who how why even without until while
    under into as via
""".split())
_SUBJECT_SKIP = frozenset("""
    a an the any all every each new my our your their me us you them it this that these those some
    more fewer less many much only just really always never ever
""".split())
_FAMILIES = {
    "npm": "js-package-manager", "pnpm": "js-package-manager", "yarn": "js-package-manager",
    "bun": "js-package-manager", "pip": "python-package-manager", "uv": "python-package-manager",
    "poetry": "python-package-manager", "pipenv": "python-package-manager", "conda": "python-package-manager",
    "tab": "indentation", "space": "indentation", "single": "quote-style", "double": "quote-style",
    "verbose": "verbosity", "terse": "verbosity", "concise": "verbosity", "brief": "verbosity",
    "detailed": "verbosity", "short": "verbosity", "long": "verbosity",
    "jest": "js-test-runner", "vitest": "js-test-runner", "mocha": "js-test-runner",
    "unittest": "python-test-runner", "pytest": "python-test-runner",
    "playwright": "e2e-runner", "cypress": "e2e-runner",
}


def _subject(statement: str, restore) -> str:
    """A short key of what the statement is about: the object(s) of its verb, '|'-joined, new first."""
    text = _SUBJECT_LEAD.sub("", statement.strip())
    text = re.sub(r"^\w+\s+", "", text, count=1)  # the verb itself
    parts = re.split(rf"\s*,?\s+(?:instead of|rather than|over|not)\s+", text, maxsplit=1, flags=re.I)
    phrases = [_object_phrase(restore(part)) for part in parts]
    phrases = [p for p in phrases if p]
    if not phrases:
        verb = re.match(r"^\W*(\w+)", _SUBJECT_LEAD.sub("", statement.strip()))
        return verb.group(1).lower() if verb else ""
    return "|".join(dict.fromkeys(phrases))


def _object_phrase(text: str) -> str:
    """The first noun phrase of ``text``, determiners dropped, words singular, at most 3 words."""
    words = re.findall(r"[\w.+#/@-]+", text.lower().replace("`", " "))
    taken: list[str] = []
    for word in words:
        word = word.strip(".-")
        if not word:
            continue
        if word in _SUBJECT_STOP:
            if taken:
                break
            continue
        if word in _SUBJECT_SKIP or (word.endswith("ly") and len(word) > 4):
            continue
        taken.append(_singular(word))
        if len(taken) == 3:
            break
    return " ".join(taken)


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is", "ous")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    return word[:-1]


def _canonical(phrase: str) -> str:
    """Map rival tools and styles (npm/pnpm, tabs/spaces) to one family so they compare equal."""
    return " ".join(_FAMILIES.get(word, word) for word in phrase.split())


# --------------------------------------------------------------------------- category

_CATEGORY_WORDS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(pattern, re.I))
    for name, pattern in (
        ("testing", r"\b(?:tests?|testing|pytest|jest|vitest|mocha|mocks?|mocking|fixtures?|coverage|e2e|"
                    r"end-to-end|playwright|cypress|snapshot|unittest|regression|assert\w*|tdd|factories)\b"),
        ("communication", r"\b(?:respond|answers?|repl(?:y|ies)|explain|explanations?|summar\w+|apologi\w+|"
                          r"ask me|tell me|show me|give me|verbose|terse|output|responses?|bullet|markdown tables?|"
                          r"english|jargon|confirmation|phrase|talk to me|guess)\b"),
        ("workflow", r"\b(?:commits?|committing|push|pushes|branch(?:es)?|merg\w+|rebase|prs?|pull requests?|"
                     r"changelog|deploy\w*|release|migrations?|squash|staging|prod|git|stage files|drafts?|"
                     r"nginx config|schema)\b"),
        ("tooling", r"\b(?:npm|pnpm|yarn|bun|npx|pip|uv|poetry|pipenv|docker|compose|terraform|kubectl|vite|"
                    r"webpack|eslint|prettier|ruff|flake8|black|brew|make|cargo|gh|sudo|install\w*|packages?|"
                    r"dependenc\w+|lockfile|ripgrep|grep|linter|httpx|requests|lodash|moment\.js|date-fns|zod|yup)\b"),
        ("style", r"\b(?:quotes?|emojis?|indent\w*|tabs?|spaces|naming|camelcase|snake_case|type hints?|"
                  r"docstrings?|comments?|exports?|imports?|const|let|var|f-strings?|semicolons?|lines?|format\w*|"
                  r"nested|ternar\w+|early returns?|async|await|components?|abbreviations?|any|magic numbers?|"
                  r"inheritance|composition|pathlib|html|tailwind|styles?|console\.log|names?|exceptions?)\b"),
    )
)


def _category(statement: str) -> str:
    """The category with the most keyword hits; earlier categories win ties."""
    best, best_hits = "general", 0
    for name, pattern in _CATEGORY_WORDS:
        hits = len(pattern.findall(statement))
        if hits > best_hits:
            best, best_hits = name, hits
    return best
