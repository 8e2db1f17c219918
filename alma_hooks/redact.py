"""Secret redaction for everything alma-hooks stores, injects or sends.

Every prompt, Bash command and tool output passes through :func:`redact`
before it becomes a memory, so this module sits in the hot path of every
Claude Code hook. Hence: stdlib only, every pattern compiled once at import,
and patterns shaped for Python's regex engine:

* each pattern starts with a literal (``sk-ant-``, ``AKIA``...), which the
  engine finds with a fast substring search instead of trying every position;
  word-boundary checks come right after the literal as a lookbehind;
* case-insensitive rules run on a lower-cased copy of the text (same length,
  same offsets) so that they too start with a literal;
* no repeat can backtrack super-linearly: each is over a class that cannot
  overlap what follows it, or bounded.

A secret becomes ``[REDACTED:<kind>]`` and the text around it is kept, so a
memory still says *what* was done (``export OPENAI_API_KEY=[REDACTED:openai_key]``)
without saying *with what*. ``<private>...</private>`` spans become ``[PRIVATE]``.

Rules run in a fixed order: ``<private>`` first (it swallows whatever it
contains), then formats recognisable on their own (``ghp_...``, ``AKIA...``),
then secrets recognisable only by their context (``DB_PASSWORD=...``), then the
generic high-entropy rule. No rule matches another rule's marker, which is
what makes ``redact`` idempotent.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable, Iterable, NamedTuple

__all__ = ["KINDS", "PRIVATE_MARK", "contains_secret", "redact", "redact_obj"]

PRIVATE_MARK = "[PRIVATE]"

#: A replacement: the span of the text to replace and what to put there.
_Edit = tuple[int, int, str]


def _mark(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class _Rule(NamedTuple):
    """One pattern and how a match of it becomes an edit.

    ``lowered``: the pattern is written in lower case and runs on the
    lower-cased text (a case-insensitive rule that still starts with a literal).
    ``edit``: turns a match into an edit of the original text, or ``None`` to
    leave it; by default the group named ``secret`` (or the whole match)
    becomes the marker of ``kind``.
    """

    kind: str
    pattern: re.Pattern[str]
    lowered: bool = False
    edit: Callable[[re.Match[str], str], _Edit | None] | None = None


def _default_edit(match: re.Match[str], kind: str) -> _Edit:
    group = "secret" if "secret" in match.re.groupindex else 0
    start, end = match.span(group)
    return start, end, _mark(kind)


def _value_group(match: re.Match[str]) -> str:
    """Which of a pattern's value alternatives matched: ``dq``, ``sq`` (quoted) or ``bare``."""
    if match.start("dq") >= 0:
        return "dq"
    return "sq" if match.start("sq") >= 0 else "bare"


# A value that is already a marker is not redacted again.
_NOT_MARK = r"(?!\[redacted:|\[private\])"
_NOT_MARK_CASED = r"(?!\[REDACTED:|\[PRIVATE\])"

# Placeholders and Key Vault references name a secret without holding it.
_REFERENCE = re.compile(
    r"""(?ix)
    \$ | %\( | \{\{ | <[^>]*>$ | \*+$ | x{3,}$ | \.\.\.$    # $VAR ${VAR} %(x)s {{ x }} <token> *** xxx ...
    | @microsoft\.keyvault\( | (?:kv|keyvault|azure-keyvault|vault)://
    | https://[\w.-]+\.vault\.azure\.net/secrets/
    """
)


def _is_reference(value: str) -> bool:
    """True for empty values, placeholders and Key Vault references."""
    return not value or _REFERENCE.match(value) is not None


# --- <private> ------------------------------------------------------------------

# An unclosed tag hides everything after it: better too much than a leak.
_PRIVATE = re.compile(r"<private(?![\w-])[^<>]{0,200}>[^<]*(?:<(?!/private\s*>)[^<]*)*(?:</private\s*>)?")


# --- formats recognisable on their own -----------------------------------------


def _token(prefix: str, body: str) -> re.Pattern[str]:
    """``prefix`` + ``body`` with no word character before the prefix.

    The boundary check is a lookbehind placed after the literal prefix, so the
    regex engine can still search for the prefix as a plain substring.
    """
    literal = re.escape(prefix)
    return re.compile(literal + rf"(?<![A-Za-z0-9_]{literal})" + body)


_END = r"(?![A-Za-z0-9_])"

_PEM = re.compile(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # The body, up to the END line or (unclosed) the next "-----" or the end.
    r"[^-]*(?:-(?!----)[^-]*)*"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
)

_AZURE_CLIENT_SECRET = re.compile(
    # Entra ID client secrets: 3 chars, a digit, "Q~", 31-34 chars. The match
    # starts at "Q~" (a literal); the edit reaches back over the first 4 chars.
    r"Q~(?<=(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}\dQ~)[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])"
)


def _azure_client_secret(match: re.Match[str], text: str) -> _Edit:
    return match.start() - 4, match.end(), _mark("azure_client_secret")


def _with_digit(kind: str) -> Callable[[re.Match[str], str], _Edit | None]:
    """An edit for tokens that count only if they hold a digit ("sk-some-long-branch-name" does not)."""

    def edit(match: re.Match[str], text: str) -> _Edit | None:
        return _default_edit(match, kind) if _HAS_DIGIT(match.group()) else None

    return edit


_HAS_DIGIT = re.compile(r"\d").search
_HAS_LETTER = re.compile(r"[A-Za-z]").search

_AWS_KEY_PREFIXES = "KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA"

_FORMATS = [
    _Rule("private_key", _PEM),
    # Anthropic before OpenAI: "sk-ant-..." also fits the OpenAI shape.
    _Rule("anthropic_key", _token("sk-ant-", r"[A-Za-z0-9_\-]{20,}")),
    _Rule("openai_key", _token("sk-", r"[A-Za-z0-9_\-]{20,}"), edit=_with_digit("openai_key")),
    _Rule("aws_key", _token("A", rf"(?:{_AWS_KEY_PREFIXES})[A-Z0-9]{{16}}" + _END)),
    _Rule("github_token", _token("gh", r"[pousr]_[A-Za-z0-9]{36,255}" + _END)),
    _Rule("github_token", _token("github_pat_", r"[A-Za-z0-9_]{22,255}" + _END)),
    _Rule("gitlab_token", _token("glpat-", r"[A-Za-z0-9_\-]{20,}")),
    _Rule("slack_token", _token("xox", r"[abposr]-[A-Za-z0-9\-]{10,}")),
    _Rule(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}"),
    ),
    _Rule("stripe_key", _token("sk_", r"(?:live|test)_[A-Za-z0-9]{16,}")),
    _Rule("stripe_key", _token("rk_", r"(?:live|test)_[A-Za-z0-9]{16,}")),
    _Rule("google_api_key", _token("AIza", r"[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])")),
    _Rule("npm_token", _token("npm_", r"[A-Za-z0-9]{36}" + _END)),
    _Rule("sendgrid_key", _token("SG.", r"[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}(?![A-Za-z0-9_\-])")),
    _Rule("twilio_key", _token("SK", r"[0-9a-fA-F]{32}" + _END)),
    _Rule("huggingface_token", _token("hf_", r"[A-Za-z0-9]{30,}" + _END)),
    _Rule("pypi_token", _token("pypi-AgE", r"[A-Za-z0-9_\-]{50,}")),
    _Rule("jwt", _token("eyJ", r"[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*")),
    _Rule("azure_client_secret", _AZURE_CLIENT_SECRET, edit=_azure_client_secret),
]


# --- Azure connection strings and SAS URLs -------------------------------------

_AZURE = [
    _Rule(
        "azure_key",
        re.compile(r"accountkey(?<![\w-]accountkey)\s*=\s*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)"),
        lowered=True,
    ),
    _Rule(
        "azure_key",
        re.compile(r"sharedaccesskey(?<![\w-]sharedaccesskey)\s*=\s*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)"),
        lowered=True,
    ),
    _Rule(
        "azure_sas",
        re.compile(r"sharedaccesssignature\s*=\s*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)"),
        lowered=True,
    ),
    _Rule("azure_sas", re.compile(r"sig=(?<=[?&;]sig=)" + _NOT_MARK_CASED + r"(?P<secret>[A-Za-z0-9%+/=]{10,})")),
]


# --- secrets known by their context --------------------------------------------

_AWS_SECRET = re.compile(
    r"secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?P<secret>[a-z0-9/+]{40})(?![a-z0-9/+=])"
)

_URL_PASSWORD = re.compile(
    r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\"'<>]{1,256}:" + _NOT_MARK_CASED + r"(?P<secret>[^\s@/?#\"'<>]{1,256})@"
)

_TOKEN_CHARS = r"[a-z0-9\-._~+/]"  # RFC 6750 b64token ("=" padding apart), lower-cased
_SCHEMES = r"(?:bearer|basic|token|digest|bot|sso-key)"

_AUTH_HEADER = re.compile(
    r"authorization(?<![\w]authorization)[\"']?\s*[:=]\s*[\"']?"
    + _NOT_MARK
    + rf"(?:(?P<scheme>{_SCHEMES})[ \t]+(?P<secret>{_TOKEN_CHARS}+=*)"
    # Without a scheme, only a long token with a digit: not `request.headers.get`.
    + rf"|(?!{_SCHEMES}\b)(?={_TOKEN_CHARS}{{0,200}}\d)(?P<bare>{_TOKEN_CHARS}{{20,}}=*))"
)

_BARE_BEARER = re.compile(
    rf"bearer(?<![\w]bearer)[ \t]+(?={_TOKEN_CHARS}{{0,200}}\d)(?P<secret>{_TOKEN_CHARS}{{16,}}=*)"
)


def _auth_header(match: re.Match[str], text: str) -> _Edit:
    kind = "basic_auth" if match.group("scheme") == "basic" else "bearer_token"
    start, end = match.span("secret" if match.start("secret") >= 0 else "bare")
    return start, end, _mark(kind)


_USER_FLAG = re.compile(
    r"-(?<![\w-]-)(?:u|-user)[ \t=]+[\"']?[^\s:\"']{1,256}:" + _NOT_MARK_CASED + r"(?P<secret>[^\s\"']{1,256})"
)


def _curl_user(match: re.Match[str], text: str) -> _Edit | None:
    # "-u user:pass" is a password only for curl: "docker run -u 1000:1000" is not.
    line_start = max(text.rfind("\n", 0, match.start()) + 1, match.start() - 500)
    if re.search(r"\bcurl\b", text[line_start : match.start()]) is None:
        return None
    return _default_edit(match, "password")


_CLI_FLAG = re.compile(
    r"--(?<![\w-]--)(?P<flag>password|passwd|token|access-token|auth-token|api-key|api_key|apikey"
    r"|client-secret|secret)(?:=|[ \t]+)"
    + r"(?:\""
    + _NOT_MARK_CASED
    + r"(?P<dq>[^\"\n]*)\"|'"
    + _NOT_MARK_CASED
    + r"(?P<sq>[^'\n]*)'|"
    + _NOT_MARK_CASED
    + r"(?!-)(?P<bare>[^\s\"'`]+))"
)

_METAVAR = re.compile(r"[A-Z_]+[\])}]*")  # "--token TOKEN" in --help output


def _cli_flag(match: re.Match[str], text: str) -> _Edit | None:
    start, end = match.span(_value_group(match))
    value = text[start:end]
    if _is_reference(value) or _METAVAR.fullmatch(value):
        return None
    flag = match.group("flag")
    kind = "password" if "pass" in flag else "secret" if "secret" in flag else "api_key" if "key" in flag else "token"
    return start, end, _mark(kind)


# NAME=value, NAME: value, "name": "value", name = 'value', 'name' => 'value' ...
# One rule per keyword so that each pattern starts with a literal.
_ASSIGN_KEYWORDS = (
    ("passw(?:or)?d", "password"),
    ("secret", "secret"),
    ("token", "token"),
    ("api[_\\-]?key", "api_key"),
    ("access[_\\-]?key", "access_key"),
    ("private[_\\-]?key", "private_key"),
    ("credentials?", "credentials"),
)

_ASSIGN_VALUE = (
    r"(?P<tail>[a-z0-9_.\-]{0,40})"
    r"\\?[\"']?[ \t]*(?::=|=>|=(?![=~])|:(?![:/]))[ \t]*"
    + r"(?:\\?\""
    + _NOT_MARK
    + r"(?P<dq>[^\"\\\n]{0,1024})|\\?'"
    + _NOT_MARK
    + r"(?P<sq>[^'\\\n]{0,1024})|"
    + _NOT_MARK
    + r"(?P<bare>[^\s\"'`,;&|<>(){}\[\]]{1,1024})(?P<call>[(\[]?))"
)

# The word after the keyword when the name is about a secret rather than one:
# TOKEN_COUNT, secretName, PASSWORD_FILE, token_type, ACCESS_KEY_ID ...
_NOT_SECRET_TAIL = frozenset(
    """count counts type types url uri urls endpoint name names file files path paths dir
    limit limits length len size ttl expiry expires expiration exp header field label
    prompt id ids budget usage max min policy hint index idx regex pattern kind format
    version provider store manager service source scope scopes env var ref location
    mode method param arg reset rotation validity valid""".split()
)

# Type annotations and literals: "password: str", "token = None", "api_key: Optional[str]".
_CODE_WORDS = frozenset(
    """str string int float bool boolean bytes dict list any optional none null nil true
    false undefined number object secretstr secretbytes union self cls void""".split()
)

_TAIL_WORD = re.compile(r"[_\-]*([A-Z]?[a-z]+|[A-Z]+|\d+)")
_SEPARATORS = re.compile(r"[_\-]")
_ATTRIBUTE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _names_a_secret(keyword: str, tail: str) -> bool:
    """Whether ``<prefix><keyword><tail>`` is the name of a secret value."""
    if tail.startswith("."):
        return False  # self.token.expiry, token.json
    if tail and tail[0].isalpha() and not (keyword[-1].islower() and tail[0].isupper()):
        return False  # the keyword is part of a longer word: tokens, tokenizer, secretary
    word = _TAIL_WORD.match(tail)
    return word is None or word.group(1).lower() not in _NOT_SECRET_TAIL


def _looks_like_code(match: re.Match[str]) -> bool:
    """Whether an unquoted value (matched on lower-cased text) is an expression, not a secret."""
    if match.group("call"):
        return True  # password=getpass(), token = environ["X"]
    value = match.group("bare")
    if _SEPARATORS.sub("", value).endswith(_SEPARATORS.sub("", match.group("kw"))):
        return True  # api_key=api_key, token=self.token, password=args.db_password
    if value.split("|", 1)[0] in _CODE_WORDS:
        return True
    return _ATTRIBUTE.fullmatch(value) is not None  # settings.db_pw, process.env.X


def _assignment_edit(kind: str) -> Callable[[re.Match[str], str], _Edit | None]:
    def edit(match: re.Match[str], text: str) -> _Edit | None:
        keyword = text[match.start() : match.end("kw")]
        if not _names_a_secret(keyword, text[slice(*match.span("tail"))]):
            return None
        name = _value_group(match)
        start, end = match.span(name)
        if _is_reference(text[start:end]) or (name == "bare" and _looks_like_code(match)):
            return None
        return start, end, _mark(kind)

    return edit


_ASSIGNMENTS = [
    _Rule(
        kind,
        re.compile(rf"(?P<kw>{keyword})" + _ASSIGN_VALUE),
        lowered=True,
        edit=_assignment_edit(kind),
    )
    for keyword, kind in _ASSIGN_KEYWORDS
]

_CONTEXT = [
    _Rule("aws_secret", _AWS_SECRET, lowered=True),
    _Rule("password", _URL_PASSWORD),
    _Rule("bearer_token", _AUTH_HEADER, lowered=True, edit=_auth_header),
    _Rule("bearer_token", _BARE_BEARER, lowered=True),
    _Rule("password", _USER_FLAG, edit=_curl_user),
    _Rule("password", _CLI_FLAG, edit=_cli_flag),
    *_ASSIGNMENTS,
]


# --- generic high entropy ------------------------------------------------------

# Runs of base64/base64url characters, "=" only as trailing padding so that
# NAME=value splits in two. The run must follow a character outside the run
# class (the text start is checked apart): a leading class lets the engine
# skip most positions, where a lookbehind would try every one.
_RUN_CLASS = r"[A-Za-z0-9+/_\-]"
_RUN = re.compile(rf"[^A-Za-z0-9+/_\-](?P<secret>{_RUN_CLASS}{{32,}}={{0,2}})")
_RUN_AT_START = re.compile(rf"(?P<secret>{_RUN_CLASS}{{32,}}={{0,2}})")
_AZURE_ACCOUNT_KEY = re.compile(r"[A-Za-z0-9+/]{86}==")  # 64 random bytes in base64
_HEX = re.compile(r"[0-9a-fA-F]+")
_PART_SPLIT = re.compile(r"[/_\-]+")
_DIGIT_GROUPS = re.compile(r"\d+")
_MAX_RUN = 1024  # longer runs are data (images, archives), not credentials
# High entropy by design, and public: SSH public keys, data: URIs, SRI hashes.
_PUBLIC_BEFORE = re.compile(r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|base64,)\s?\Z")
_SRI = re.compile(r"sha(?:1|256|384|512)-")


# n * log2(n) for every count a run of at most _MAX_RUN characters can hold.
_N_LOG_N = [0.0] + [n * math.log2(n) for n in range(1, _MAX_RUN + 1)]


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character (``text`` at most ``_MAX_RUN`` long)."""
    size = len(text)
    return math.log2(size) - sum(map(_N_LOG_N.__getitem__, Counter(text).values())) / size


# Maximal runs of one character class; their count minus one is the number of switches.
_CLASS_RUNS = re.compile(r"[a-z]+|[A-Z]+|[0-9]+|[^A-Za-z0-9]+")


def _char_class_changes(text: str) -> float:
    """The share of adjacent pairs that switch between lower, upper, digit and other."""
    return (len(_CLASS_RUNS.findall(text)) - 1) / (len(text) - 1)


def _is_benign_part(part: str) -> bool:
    return len(part) < 10 or part.isalpha() or part.isdigit() or _HEX.fullmatch(part) is not None


def _is_random(run: str) -> bool:
    """Whether a long base64-ish run looks like a random credential.

    Random tokens mix letters and digits all along (thresholds measured on
    random base36/base62/base64 tokens: under 1% of 40-char ones slip through).
    Identifiers, paths, model names, UUIDs and hex digests (commit SHAs,
    sha256) either do not, or are made of parts that each are a word, a number
    or hex.
    """
    core = run.rstrip("=")
    if len(core) > _MAX_RUN or _SRI.match(core):
        return False
    if not (_HAS_DIGIT(core) and _HAS_LETTER(core)):
        return False
    if all(_is_benign_part(part) for part in _PART_SPLIT.split(core)):
        return False
    if _entropy(core) < 3.7:
        return False
    return _char_class_changes(core) >= 0.35 or len(_DIGIT_GROUPS.findall(core)) >= 4


def _high_entropy(match: re.Match[str], text: str) -> _Edit | None:
    start, end = match.span("secret")
    run = match.group("secret")
    before = text[max(0, start - 24) : start]
    if ("ssh-" in before or "ecdsa-" in before or "base64," in before) and _PUBLIC_BEFORE.search(before):
        return None
    if _AZURE_ACCOUNT_KEY.fullmatch(run):
        return start, end, _mark("azure_key")
    if not _is_random(run):
        return None
    return start, end, _mark("high_entropy")


_GENERIC = _Rule("high_entropy", _RUN, edit=_high_entropy)


# --- applying the rules ---------------------------------------------------------

_SECRET_RULES = (*_FORMATS, *_AZURE, *_CONTEXT, _GENERIC)

#: Every kind that can appear in a ``[REDACTED:<kind>]`` marker.
KINDS = frozenset({rule.kind for rule in _SECRET_RULES} | {"azure_key", "basic_auth"})


def _lower(text: str) -> str:
    """``text`` lower-cased with its length kept, so offsets stay valid.

    U+0130 (capital I with dot) is the one character whose lower case is two
    characters long.
    """
    return text.replace("\u0130", "i").lower()


def _private(match: re.Match[str], text: str) -> _Edit:
    return match.start(), match.end(), PRIVATE_MARK


_PRIVATE_RULE = _Rule("private", _PRIVATE, lowered=True, edit=_private)


def _matches(rule: _Rule, subject: str) -> Iterable[re.Match[str]]:
    if rule is not _GENERIC:
        return rule.pattern.finditer(subject)
    first = _RUN_AT_START.match(subject)
    rest = rule.pattern.finditer(subject)
    return [first, *rest] if first else rest


class _Text:
    """The text being redacted and, computed when first needed, its lower-cased copy."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._lowered: str | None = None

    @property
    def lowered(self) -> str:
        if self._lowered is None:
            self._lowered = _lower(self.text)
        return self._lowered

    def apply(self, rule: _Rule) -> bool:
        """Apply ``rule``; return whether the text changed."""
        text = self.text
        pieces: list[str] = []
        last = 0
        for match in _matches(rule, self.lowered if rule.lowered else text):
            edit = rule.edit(match, text) if rule.edit else _default_edit(match, rule.kind)
            if edit is not None:
                start, end, marker = edit
                pieces += (text[last:start], marker)
                last = end
        if not pieces:
            return False
        pieces.append(text[last:])
        self.text, self._lowered = "".join(pieces), None
        return True


def redact(text: str) -> str:
    """Return ``text`` with secrets replaced by ``[REDACTED:<kind>]`` and private spans by ``[PRIVATE]``.

    Anything that is not a ``str`` is returned unchanged. ``redact(redact(x)) == redact(x)``.
    """
    if not isinstance(text, str):
        return text
    state = _Text(text)
    if "<" in text:
        state.apply(_PRIVATE_RULE)
    for rule in _SECRET_RULES:
        state.apply(rule)
    return state.text


def redact_obj(obj: Any) -> Any:
    """Return a copy of ``obj`` with every string in it (dict keys included) redacted.

    Walks dicts, lists and tuples; other values are returned as they are.
    """
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(key): redact_obj(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [redact_obj(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact_obj(item) for item in obj)
    return obj


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a plaintext secret (``<private>`` spans do not count).

    Used to refuse secrets written into configuration files, where only Key
    Vault references or ``${ENV}`` placeholders belong.
    """
    if not isinstance(text, str):
        return False
    state = _Text(text)
    return any(state.apply(rule) for rule in _SECRET_RULES)
