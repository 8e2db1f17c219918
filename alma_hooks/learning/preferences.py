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

from ..patterns import lazy

CATEGORIES = ("tooling", "style", "testing", "communication", "workflow", "general")

#: Prompts longer than this are mostly pasted material: only their first and last sentence count.
LONG_PROMPT = 2000
#: A sentence longer than this is pasted text (a log line, a blob), never a standing instruction;
#: skipping it also bounds the regex work per prompt.
LONG_SENTENCE = 400


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

# Base forms of verbs that open an instruction to a coding agent. Every rule needs its
# clause to open with one (after "always", "don't", "stop ...ing" and the like), which is what
# separates "Always use pnpm" from "Always getting a 401" or "Never seen this before".
_VERBS = frozenset("""
    abbreviate add align allow amend annotate answer append apologize apologise apply ask assume
    avoid await be begin benchmark block bootstrap break build bump bundle bypass cache call
    capitalize capitalise catch chain change check choose cite clean clone close comment commit
    compile configure confirm copy create debug declare default define delete depend deploy describe
    disable do document downgrade drop echo edit emit enable encode encrypt end escape explain
    export expose extract fetch fix flag follow force format generate give go guess handle hardcode
    hash hide ignore import include indent inline install invent keep label leave let limit link
    lint load lock log loop make mark measure mention merge migrate minify mock modify monitor move
    mutate name nest notify open optimize optimise output override overwrite pad paste patch pin
    poll prefer prefix prepend pretend print profile promise prompt publish pull push put query
    quote raise read rebase refactor reference regenerate release reload rely remove rename render
    reorder repeat reply report respond restart retry return reuse review revert rewrite roll run
    sanitize sanitise save say scaffold search seed send set ship show sign simplify skip sleep sort
    speculate spell split squash stage start stash stick store stub style summarize summarise
    suppress swallow switch tag talk tell test throw touch trace translate trust truncate type
    uninstall update upgrade upload use validate vendor verify wait warn wrap write
""".split())

# Mass nouns and language names that make "don't use X in <context>" a general rule.
_GENERIC_CONTEXTS = frozenset("""
    code production prod ci general typescript javascript python go golang rust java kotlin
    swift ruby php sql bash shell css html yaml json markdown react vue svelte docs
    documentation prose
""".split())

_REPO_NOUNS = r"(?:repo|repository|project|codebase|monorepo|workspace|team|company|org|organi[sz]ation|app|service)"

_APOS = r"['\u2019]"

# Leading words that carry no instruction: "btw", "ok so", "thanks, that works".
_FILLER = lazy(
    r"^(?:btw|by the way|fyi|ok(?:ay)?|alright|right|so|also|and|oh|hey|hi|one more thing|another thing|"
    r"quick note|note|ps|p\.s\.|important|reminder|just|thanks|thank you|cool|great|perfect|nice|"
    r"looks good|that works|got it|sounds good|remember that|note that|keep in mind that|"
    r"for the record|as i said|like i said|i told you to|i said)\b[\s,:;.!\-]*",
    re.I,
)
_CORRECTION = lazy(
    r"^(?:(?:no+|nope|nah|wrong|actually|not like that|not quite)(?:[\s,.!]+no+)?[,:;.!\u2013\u2014-]+\s*"
    r"|(?:nope|nah|actually|no+(?=\s+(?:please\s+)?(?:use|prefer|run|go|stick)\b))\s+)",
    re.I,
)

# --------------------------------------------------------------------------- sentence filters

_QUESTION_START = lazy(
    rf"^(?:should|shall|do(?!\s+not\b)(?!n{_APOS}t)|does|did|can|could|would|will|is|are|was|were|"
    rf"what|what{_APOS}s|whats|why|how|which|who|where|isn{_APOS}t|aren{_APOS}t|doesn{_APOS}t|any idea)\b",
    re.I,
)
_CONDITIONAL_START = lazy(
    r"^(?:if|in case|unless|assuming|suppose|supposing|what if|when|once|after|before|while)\b", re.I
)
# "make it always show X", "so the job never retries": how the code should behave, a task.
_CODE_BEHAVIOUR = lazy(
    r"\b(?:make|makes|have|let|ensure|so|so that)\s+(?:it|them|this|that|(?:the|our|my)\s+[\w-]+(?:\s+[\w-]+)?)"
    r"\s+(?:always|never)\b",
    re.I,
)
_HEDGE = lazy(r"\b(?:maybe|perhaps|might|not sure|i guess|wondering|what about|how about)\b", re.I)
_REPORTED = lazy(
    r"\b(?:says|said|told|tells|according to|commented|mentioned|wrote|recommends|recommended|"
    r"suggests|suggested|claims|claimed|wants (?:us|me|you) to|asked (?:us|me) to)\b"
    r"|\b(?:docs|documentation|readme|guide|article|people|everyone|they|he|she)\s+(?:say|recommend|suggest)\b",
    re.I,
)
_ONE_OFF = lazy(
    rf"\b(?:for now|for the moment|for the time being|this time|just this once|this once|right now|"
    rf"temporarily|today|tonight|tomorrow|yet|at the moment|this (?:week|sprint|release|morning|afternoon)|"
    rf"(?:on |by |until |next )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|next (?:week|sprint)|"
    rf"for this (?!{_REPO_NOUNS}\b)\w+|"
    rf"in this (?:pr|branch|commit|file|function|change|ticket|task|session|component|test|case|script)\b)",
    re.I,
)
# A specific spot ("on the settings page", "in that file") marks a one-off edit.
_LOCATION = lazy(
    r"\b(?:in|on|at|from|to|inside)\s+(?:the|this|that)\s+(?:[\w.-]+\s+){0,2}"
    r"(?:file|page|function|method|class|component|module|endpoint|screen|modal|test|line|branch|pr|"
    r"script|dockerfile|header|footer|form|button|view|route|handler|query|table|helper)\b",
    re.I,
)
# "in fetchUsers()", "in src/utils/date.ts": a place in the code, so a one-off edit.
_CODE_LOCATION = lazy(
    r"\b(?:in|inside|from|to)\s+`?[\w.]+\(\)|\b(?:in|inside)\s+`?[\w./-]+/[\w.-]+\.\w{1,5}\b", re.I
)
# "that" right after a plural noun is a relative pronoun ("comments that restate the code").
_DEICTIC = lazy(
    rf"(?:\b(?:this|these|those)|(?<![a-z]s )\bthat)\b(?!\s+{_REPO_NOUNS}\b)|\bthe (?:\w+ )?one\b", re.I
)
_BULLET = lazy(r"^(?:[-*+\u2022]|\d{1,2}[.)])\s+")
# Log, compiler and linter lines; code comments; shell and quote lines.
_LOG_OR_CODE = lazy(
    r"^(?:[\w.\-\[\]]*(?:error|warning|warn|exception|info|debug|fatal|notice)\b.*?:|npm (?:warn|err!?)|"
    r"ts\d+|e\d{3,4}\b|eslint|ruff|mypy|flake8|pylint|traceback|file \"|"
    r"//|/\*|\*|#|--|>|\$|%|def |class |const |let |var |export |import |from \S+ import)",
    re.I,
)

# --------------------------------------------------------------------------- instruction patterns

# "always"/"never" and their long forms, at the start of a clause.
_ALWAYS_LEAD = lazy(
    rf"^(?:please\s+)?(?:(?:make sure|be sure)\s+(?:to|you)\s+|remember to\s+|"
    rf"(?:you|we)\s+(?:should|must|need to)\s+|i(?:{_APOS}d| would)?\s+(?:want|need|like)\s+you\s+to\s+)?"
    rf"(?:please\s+)?(always|never(?:\s+ever)?|don{_APOS}t\s+ever|do\s+not\s+ever|dont\s+ever)\s+([\w-]+)",
    re.I,
)
_WE_HABIT = lazy(r"^we\s+(?:always|never|only|generally|usually)?\s*(\w+)\b", re.I)
_STANDING_MARKER = lazy(
    rf"\b(?:from now on|from here on(?: out)?|going forward|moving forward|in (?:the )?future|"
    rf"for future reference|by default|as a (?:general )?rule|in (?:this|our|the) {_REPO_NOUNS}|"
    rf"in all (?:new |future )?\w+|for all (?:new |future )?\w+|in new code|from today on)\b"
    rf"|,\s*always(?=[\s.!]*$)",
    re.I,
)
_EDGE_AFTER = lazy(r"^\s*(?:[,.!;:\-]|$)")
_HABITUAL_LEAD = lazy(r"^(?:whenever|every time|each time|any ?time)\b[^,]*,\s*", re.I)
_FIRST_PERSON = lazy(
    rf"^(?:i|we)\s+(?:really\s+|strongly\s+|generally\s+|usually\s+|personally\s+|much\s+|definitely\s+|also\s+)?"
    rf"prefer(?![\w-])(?!\s+not\b)"
    rf"|^i(?:\s+would\s+(?:prefer|rather)|{_APOS}d\s+(?:much\s+)?(?:prefer|rather))(?![\w-])(?!\s+not\b)"
    rf"|^i\s+(?:really\s+|much\s+)?like\s+.+?\s+(?:better|more)\b"
    rf"|^i\s+(?:hate|dislike|don{_APOS}t\s+like|do\s+not\s+like|can{_APOS}t\s+stand)\s+(?:it\s+)?when\s+you\s+\w+",
    re.I,
)
_PREFER_IMPERATIVE = lazy(r"^(?:please\s+)?prefer\s+(?!not\b)\w", re.I)
_STOP_DOING = lazy(r"^(?:please\s+)?(?:stop|quit)\s+(\w+ing)\b", re.I)
_COMPARATOR = r"(?:instead\s+of|rather\s+than|over|not)"
#: "X does not Y" states what something does, it is no swap "use X, not Y": an auxiliary
#: right before the comparator rules the swap out ("make sure the form does not submit ...").
_NOT_AFTER_AUXILIARY = "".join(rf"(?<!\b{aux})" for aux in (
    "do", "does", "did", "is", "are", "was", "were", "can", "could", "should", "must", "will", "would",
    "has", "have", "had", "may", "might", "shall"))
_SWAP = lazy(
    rf"^(?:please\s+)?(?:just\s+)?(use|prefer|pick|choose|go\s+with|stick\s+(?:to|with)|write|call|"
    rf"import|name|return|run|format|put|\w+)\s+(.+?){_NOT_AFTER_AUXILIARY}\s*,?\s+{_COMPARATOR}\s+(.+)$",
    re.I,
)
_SWAP_BARE = lazy(r"^(?:please\s+)?(?:just\s+)?(\w+)\s+(.+?)\s+instead\b[.!]?$", re.I)
_DONT = lazy(rf"^(?:please\s+)?(?:don{_APOS}t|do\s+not|dont)\s+(?:ever\s+)?(\w+)\b", re.I)
_NO_THING = lazy(r"^no\s+(?:more\s+)?(?![,.!])\S", re.I)
_GENERIC_SCOPE = lazy(
    r"\b(?:ever|anymore|any more|again|anywhere|at all|under any circumstances)\b"
    r"|\b(?:every|each|any|all)\s+\w+",
    re.I,
)
_CONTEXT_PHRASE = lazy(
    r"\b(?:in|for|on|inside|within)\s+(?:(?:any|all|every|our|your|new|committed|production)\s+)?"
    r"(?:[\w-]+\s+)?([\w-]+)\b",
    re.I,
)
_ALTERNATIVE = lazy(r"[,;]\s*(?:just\s+)?(?:use|prefer|go with|stick with)\b", re.I)
_YOUR_OUTPUT = lazy(
    r"^(?:please\s+)?(?:keep|make|write|format|end|start|sign|limit|put|structure|wrap|shorten)\s+"
    r"(?:all\s+)?your\s+(?:\w+\s+)?(?:answers|responses|replies|explanations|summaries|messages|output|"
    r"comments|prs|pull requests)\b",
    re.I,
)
_QUANTIFIED = lazy(
    r"^(?:please\s+)?(use|prefer|name|keep|format|put|stick|follow|avoid|indent|pin|spell|capitalize|"
    r"prefix|wrap)\b.*\b(?:for|in|on|to|with)\s+(?:all|every|each|any)\s+\w+",
    re.I,
)
_AVOID = lazy(r"^(?:please\s+)?avoid\s+\w+", re.I)

# Strong rules need no further evidence; weak ones must also pass the one-off checks.
_STRONG, _WEAK = 2, 1


# --------------------------------------------------------------------------- public API


def detect_preference(prompt: str) -> DetectedPreference | None:
    """The standing instruction in ``prompt``, or None when it holds none (or it is unclear)."""
    if not prompt or prompt.lstrip().startswith("<task-notification>"):
        return None
    text = _strip_blocks(prompt)
    if len(prompt) > LONG_PROMPT:
        # Only the opening and closing sentences of a long paste can be the user talking.
        head, tail = text[: 2 * LONG_SENTENCE], text[-2 * LONG_SENTENCE:]
        text = f"{head}\n{tail}" if len(text) > 4 * LONG_SENTENCE else text
    masked, restore = _mask(text)
    sentences = _sentences(masked)
    if len(prompt) > LONG_PROMPT:
        sentences = sentences[:1] + sentences[-1:] if len(sentences) > 1 else sentences
    best: tuple[int, str] | None = None
    for sentence in sentences:
        if len(sentence) > LONG_SENTENCE:
            continue
        strength = _sentence_strength(sentence)
        if strength and (best is None or strength > best[0]):
            best = (strength, sentence)
            if strength == _STRONG:
                break
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

_TAGGED_BLOCK = lazy(r"<([a-z][\w-]*)(?:\s[^>]*)?>.*?</\1>", re.S)
_FENCE = lazy(r"```.*?(?:```|\Z)", re.S)
_INLINE_CODE = lazy(r"`[^`\n]+`")
_DOUBLE_QUOTED = lazy(r"\"[^\"\n]+\"|\u201c[^\u201d\n]+\u201d")
_SINGLE_QUOTED = lazy(r"(?<!\w)['\u2018]((?:[^'\u2019\n]|(?<=\w)['\u2019](?=\w))+)['\u2019](?!\w)")
_PLACEHOLDER = lazy(r"zzq(\d+)zz")


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


_SENTENCE_END = lazy(r"(?<=[.!?])\s+|\n+")


def _sentences(text: str) -> list[str]:
    """Split into sentences, list bullets dropped; a one-word tail ("Ever.") joins the one before it."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = _BULLET.sub("", piece.strip())
        if not piece:
            continue
        if out and len(piece.split()) == 1 and not out[-1].endswith("?"):
            out[-1] = f"{out[-1].rstrip('.!')}, {piece[:1].lower()}{piece[1:]}"
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


_CLAUSE_SPLIT = lazy(r"[,;:]\s+|\s+[-\u2013\u2014]+\s+")


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
    if _HEDGE.search(body) or _REPORTED.search(body) or _CODE_BEHAVIOUR.search(body):
        return True
    # "when/once/before ..." may lead a standing rule only with an explicit "always"/"never";
    # "if/unless ..." never does: the user is planning for one case.
    if _CONDITIONAL_START.match(body):
        return not re.match(
            r"^(?:when|whenever|once|before|after|while)\b[^,]*,\s*(?:please\s+)?(?:always|never)\b", body, re.I
        )
    return False


def _one_off(body: str) -> bool:
    return bool(
        _ONE_OFF.search(body) or _LOCATION.search(body) or _CODE_LOCATION.search(body) or _DEICTIC.search(body)
    )


def _clause_strength(text: str, corrected: bool) -> int:
    """Match one clause (running to the end of its sentence) against the instruction patterns."""
    if _always_rule(text) or _habit_rule(text):
        return 0 if _ONE_OFF.search(text) else _STRONG
    if _FIRST_PERSON.match(text) or _PREFER_IMPERATIVE.match(text):
        return 0 if _ONE_OFF.search(text) or _chosen_option(text) else _STRONG
    if _verb_swap(text):
        return _STRONG if corrected else _WEAK
    swap = _swap_rule(text, corrected)
    if swap:
        if corrected or text.lower().startswith(("prefer", "please prefer")):
            return _STRONG
        return 0 if _specific_thing(swap) else _WEAK
    stop = _stop_doing(text)
    if stop is not None:
        return 0 if _specific_thing(stop) else _WEAK
    negated = _negation_rule(text)
    if negated is not None:
        if re.search(r"\bever\b", text, re.I):
            return _STRONG
        return 0 if _specific_thing(negated) else _WEAK
    if _YOUR_OUTPUT.match(text) or _QUANTIFIED.match(text):
        return _WEAK
    if _AVOID.match(text) and _has_generic_scope(text):
        return _WEAK
    return 0


_DETERMINER = lazy(r"^(?:(the|this|that|its|your)|these|those)\s+([^,;.!?]*)", re.I)


def _specific_thing(phrase: str, any_definite: bool = False) -> bool:
    """'the fallback', 'those files': one thing of the current task, not a kind of thing.

    Standing instructions speak of kinds ("relative imports", "print", "emojis"); a
    definite singular or a demonstrative names something in front of the user right now.
    With ``any_definite`` a definite plural ("the tests") counts too.
    """
    match = _DETERMINER.match(phrase.strip())
    if not match:
        return False
    if not match.group(1) or any_definite:
        return True
    head = _object_phrase(match.group(2), singular=False).split()
    return bool(head) and not _is_plural(head[-1])


def _chosen_option(text: str) -> bool:
    """'I prefer the second approach', 'I'd rather see the plan first': a choice, not a rule."""
    if re.search(rf"\s{_COMPARATOR}\s|\bthan\b", text, re.I) or _has_generic_scope(text):
        return False
    liked = re.search(r"\blike\s+(.+?)\s+(?:better|more)\b", text, re.I)
    obj = liked.group(1) if liked else re.sub(r"^.*?\b(?:prefer|rather)\s+", "", text, count=1, flags=re.I)
    obj = re.sub(r"^you\s+", "", obj, flags=re.I)
    first = obj.split(" ", 1)
    if len(first) == 2 and (first[0].lower() in _VERBS or first[0].lower() in {"have", "see", "get"}):
        obj = first[1]
    return _specific_thing(obj, any_definite=True)


def _stop_doing(text: str) -> str | None:
    """The object of 'stop <verb>ing X' (None when the text is not that), the -ing a real verb."""
    match = _STOP_DOING.match(text)
    if not match:
        return None
    rest = text[match.end():].strip(" .!")
    return rest if rest and _leading_verb(match.group(1)) else None


def _always_rule(text: str) -> bool:
    """'always/never <verb>' at the start of the clause, the verb a known base form."""
    match = _ALWAYS_LEAD.match(text)
    return bool(match) and match.group(2).lower() in _VERBS


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
        # "show X by default" describes a product default; only "By default, do Y" is a rule.
        trailing = _EDGE_AFTER.match(after) and not match.group(0).lower().startswith("by default")
        if trailing and before.strip() and _imperative_start(before[clause_start + 1:].strip()):
            return not _ONE_OFF.search(body)
    return False


def _swap_rule(text: str, corrected: bool) -> str:
    """'use X instead of Y' / 'X, not Y' / 'prefer X over Y' -> X; bare 'use X instead' only after 'no,'."""
    match = _SWAP.match(text)
    if match:
        verb, new, old = match.group(1).lower(), match.group(2), _phrase_head(match.group(3))
        if verb not in _VERBS and not verb.startswith(("go", "stick")):
            return ""
        if verb == "prefer" and " over " in f" {text.lower()} ":
            return new
        ok = _short_phrase(new) and _short_phrase(old) and not _DEICTIC.search(text)
        return new if ok else ""
    bare = _SWAP_BARE.match(text)
    if corrected and bare and bare.group(1).lower() in _VERBS and _short_phrase(bare.group(2)):
        return bare.group(2)
    return ""


_PHRASE_END = lazy(r"[,;]|[.!](?:\s|$)|\s+(?:for|in|on|at|when|because|since|with|to|from|so|unless)\s+")


def _phrase_head(phrase: str) -> str:
    """The words of ``phrase`` before its first preposition or clause break."""
    return _PHRASE_END.split(phrase, maxsplit=1)[0].strip()


def _verb_swap(text: str) -> bool:
    """'(no,) rebase instead of merge': one action in place of another."""
    match = re.match(rf"^(\w+)\s+{_COMPARATOR}\s+(\w+)\W*$", text, re.I)
    return bool(match and match.group(1).lower() in _VERBS and match.group(2).lower() in _VERBS)


def _short_phrase(phrase: str) -> bool:
    words = phrase.split()
    return 0 < len(words) <= 5 and not re.search(r"\b(?:one|it|them)\b", phrase, re.I)


def _negation_rule(text: str) -> str | None:
    """The object of "don't <verb> X" with a general scope (ever, in code, every reply) or an
    alternative ("..., use Y"), or of 'no X in code'; None when the text is neither."""
    match = _DONT.match(text)
    if match:
        if match.group(1).lower() not in _VERBS:
            return None
        general = re.match(r"^(?:please\s+)?(?:don't|do not|dont)\s+ever\b", text, re.I) or _has_generic_scope(text)
        return text[match.end():].strip() if general or _ALTERNATIVE.search(text) else None
    if _NO_THING.match(text) and _has_generic_scope(text):
        return text[3:].strip()
    return None


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

_DROP_MARKERS = lazy(
    rf"\s*,?\s*\b(?:from now on|from here on(?: out)?|going forward|moving forward|in the future|"
    rf"in future|for future reference|in (?:this|our|the) (?:repo|repository|project|codebase|monorepo))\b\s*,?",
    re.I,
)
_TRAILING_NOISE = lazy(
    r"(?:[\s,]+(?:thanks|thank you|thx|ty|pls|please|ok\??|okay\??|lol|:\)|please don't|please do that))+[\s.!]*$"
    r"|[\s,.;:!]+$",
    re.I,
)
_LEAD_REWRITES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (lazy(pattern, re.I), replacement)
    for pattern, replacement in (
        (r"^please[\s,]+", ""),
        (rf"^(?:make sure|be sure)\s+(?:to|you)\s+(always|never)\b", r"\1"),
        (r"^remember to\s+(always|never)\b", r"\1"),
        (rf"^(?:you|we)\s+(?:should|must|need to)\s+(always|never)\b", r"\1"),
        (rf"^i(?:{_APOS}d| would)?\s+(?:want|need|like)\s+you\s+to\s+(always|never)\b", r"\1"),
        (rf"^(?:don{_APOS}t|do not|dont)\s+ever\b|^never\s+ever\b", "never"),
        (r"^we\s+(always|never)\s+", r"\1 "),
        (r"^we\s+use\b", "use"),
        (rf"^i(?:\s+really|\s+generally|\s+personally|\s+also)?\s+prefer\b|^i(?:{_APOS}d| would)\s+prefer\b", "prefer"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+you\s+didn{_APOS}t\b", "never"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+have\b", "prefer"),
        (rf"^i(?:{_APOS}d| would)\s+rather\s+(?:you\s+)?", ""),
        (r"^prefer\s+(?:that\s+)?you\s+", ""),
    )
)


# ", and also fix the login bug": the rest of the prompt's task, not part of the instruction.
_TASK_TAIL = lazy(r"\s*[,;]\s*(?:and\s+)?(?:also|then|now|next|anyway)\b.*$|\s+and\s+(?:also|then)\b.*$", re.I)


def _normalise(sentence: str) -> str:
    """Turn a matched sentence into a clean statement that is itself detected as a preference.

    Stored statements are read back through :func:`detect_preference` to find the ones a new
    preference supersedes, so the statement must keep enough of the standing marker: the
    cleanest candidate that is still recognised wins.
    """
    clean = _clean_statement(sentence)
    candidates = [clean]
    if _leading_verb(clean) and not re.match(r"^(?:always|never|stop|prefer|avoid)\b", clean, re.I):
        candidates.append(f"Always {clean[:1].lower()}{clean[1:]}")
    kept, _ = _strip_fillers(sentence.strip())
    kept = _TRAILING_NOISE.sub("", _TASK_TAIL.split(kept, maxsplit=1)[0])
    candidates.append(kept[:1].upper() + kept[1:])
    for candidate in candidates:
        if _sentence_strength(candidate) and _clean_statement(candidate) in (candidate, clean):
            return candidate
    return candidates[-1]


def _clean_statement(sentence: str) -> str:
    """Fillers, standing markers, politeness and first-person framing removed; an imperative if possible."""
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
    text = _TASK_TAIL.split(text, maxsplit=1)[0]
    text = re.sub(r"^(\w+)", lambda m: _base_form(m.group(1)), text, count=1)
    if corrected:
        text = re.sub(r"^(use\s+[^,]+?)\s*,?\s+not\s+", r"\1 instead of ", text, count=1, flags=re.I)
    text = _TRAILING_NOISE.sub("", text)
    text = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", text)).strip(" ,")
    return text[:1].upper() + text[1:]


def _base_form(word: str) -> str:
    """'used' -> 'use' ("I'd rather you used X"); any other word unchanged."""
    lowered = word.lower()
    if lowered.endswith("ed") and lowered not in _VERBS:
        for stem in (lowered[:-1], lowered[:-2], lowered[:-3]):
            if stem in _VERBS:
                return stem
    return word


def _rewrite_liking(text: str) -> str:
    """'I like X better than Y' -> 'Prefer X over Y'; 'I hate when you V X' -> "Don't V X"."""
    liking = re.match(r"^i\s+(?:really\s+|much\s+)?like\s+(.+?)\s+(?:better|more)\b(?:\s+than\s+)?(.*)$", text, re.I)
    if liking:
        new, rest = liking.group(1), liking.group(2).strip(" .!")
        return f"prefer {new} over {rest}" if rest and not rest.lower().startswith("for") else f"prefer {new} {rest}"
    hating = re.match(
        rf"^i\s+(?:hate|dislike|don{_APOS}t\s+like|do\s+not\s+like|can{_APOS}t\s+stand)\s+(?:it\s+)?"
        rf"when\s+you\s+([^,;]+)",
        text,
        re.I,
    )
    return f"never {hating.group(1)}" if hating else text


# --------------------------------------------------------------------------- subject

_SUBJECT_LEAD = lazy(
    rf"^(?:(?:by default|as a (?:general )?rule|always|never|don{_APOS}t|do not|dont|stop|quit|avoid|please|"
    rf"no|more|whenever you|every time you|each time you|when you)[\s,]+)+",
    re.I,
)
# "Before committing, always run the linter": the rule's object is in the main clause.
_MAIN_CLAUSE = lazy(r"^(?:when|whenever|once|before|after|while)\b[^,]*,\s*(?=(?:always|never)\b)", re.I)
_SUBJECT_SPLIT = lazy(r"\s*,?\s+(?:instead of|rather than|over|than|not)\s+|,\s*never\s+", re.I)
# Words that end a noun phrase. A wh-word before any noun means the object is a clause
# ("explain what you change"), and the verb is then the best key.
_SUBJECT_STOP = frozenset("""
    in on onto at for to with from by of about before after when whenever unless if because and or
    but so than instead rather over not here there even without until while under into as via
    through against first last then is are was were be been needs need must should
""".split())
_WH_WORDS = frozenset("what which who how why whether where".split())
_SUBJECT_SKIP = frozenset("""
    a an the any all every each new my our your their me us you them it this that these those some
    more fewer less many much only just really always never ever one
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
    text = _DROP_MARKERS.sub(",", f" {statement.strip()}").strip(" ,")
    text = _SUBJECT_LEAD.sub("", _MAIN_CLAUSE.sub("", text))
    verb = _leading_verb(text)
    if verb and not re.match(rf"^\S+\s+{_COMPARATOR}\s", text, re.I):
        text = text.split(None, 1)[1] if " " in text else ""
    parts = _SUBJECT_SPLIT.split(text, maxsplit=1)
    phrases = [_object_phrase(restore(part)) for part in parts]
    phrases = [p for p in phrases if p]
    if not phrases:
        return verb or _object_phrase(restore(text))
    return "|".join(dict.fromkeys(phrases))


def _leading_verb(text: str) -> str:
    """The base form of the verb opening ``text`` ('using' -> 'use'), or '' if it opens otherwise."""
    first = re.match(r"^(\w+)\b", text)
    if not first:
        return ""
    word = first.group(1).lower()
    if word in _VERBS:
        return word
    if word.endswith("ing"):
        stem = word[:-3]
        for candidate in (stem, stem + "e", stem[:-1]):
            if candidate in _VERBS:
                return candidate
    return ""


def _object_phrase(text: str, singular: bool = True) -> str:
    """The first noun phrase of ``text``, determiners dropped, words singular, at most 3 words."""
    text = re.split(r"[,;:!?]|\.(?:\s|$)", text, maxsplit=1)[0]
    words = re.findall(r"[\w.+#/@*'-]+", text.lower().replace("`", " ").replace("\u2019", "'"))
    taken: list[str] = []
    for word in words:
        word = word.strip(".-'")
        if not word:
            continue
        if word in _WH_WORDS or (word in _SUBJECT_STOP and taken):
            break
        if word in _SUBJECT_STOP or word in _SUBJECT_SKIP or _is_adverb(word):
            continue
        taken.append(_singular(word) if singular else word)
        if len(taken) == 3:
            break
    return " ".join(taken)


_NOT_ADVERBS = frozenset({"early", "daily", "weekly", "monthly", "nightly", "friendly", "family", "assembly"})


def _is_adverb(word: str) -> bool:
    return len(word) > 4 and word.endswith("ly") and word not in _VERBS and word not in _NOT_ADVERBS


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "sis", "ous")):
        return word
    if not re.fullmatch(r"[a-z]+(?:[-_][a-z]+)*", word):
        return word  # file names, paths and dotted names keep their spelling: moment.js, utils/
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
    (name, lazy(pattern, re.I))
    for name, pattern in (
        ("testing", r"\b(?:tests?|testing|pytest|jest|vitest|mocha|mocks?|mocking|fixtures?|coverage|e2e|"
                    r"end-to-end|playwright|cypress|snapshot|unittest|regression|assert\w*|tdd|factories)\b"),
        ("communication", r"\b(?:respond|answers?|repl(?:y|ies)|explain\w*|summar\w+|apologi\w+|"
                          r"ask me|tell me|show me|give me|to me|verbose|terse|output|responses?|bullet|"
                          r"markdown|english|jargon|confirmation|phrase|guess)\b"),
        ("workflow", r"\b(?:commits?|committing|push|pushes|branch(?:es)?|merg\w+|rebase|prs?|pull requests?|"
                     r"changelog|deploy\w*|migrations?|squash|staging|prod|git|drafts?|"
                     r"schema|history|tags?|releases?|issues?|todos?|server)\b"),
        ("tooling", r"\b(?:npm|pnpm|yarn|bun|npx|pip|uv|poetry|pipenv|docker|compose|terraform|kubectl|vite|"
                    r"webpack|eslint|prettier|ruff|flake8|black|brew|make|cargo|gh|sudo|install\w*|packages?|"
                    r"dependenc\w+|lockfile|ripgrep|grep|linter|virtualenv|venv|makefiles?|builds?|bundler|babel|"
                    r"esbuild|cli|librar(?:y|ies)|framework)\b"),
        ("style", r"\b(?:quotes?|emojis?|indent\w*|tabs?|spaces|naming|camelcase|snake_case|type hints?|"
                  r"docstrings?|comments?|exports?|imports?|const|let|var|f-strings?|semicolons?|lines?|format\w*|"
                  r"nested|ternar\w+|early returns?|async|await|components?|abbreviations?|any|magic numbers?|"
                  r"inheritance|composition|pathlib|html|tailwind|styles?|console\.log|names?|exceptions?|"
                  r"prefix|private|"
                  r"types?|class(?:es)?|dataclass\w*|alias\w*|union|commas?|constants?|variables?|print)\b"),
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
