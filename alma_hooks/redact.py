"""Secret redaction for everything alma-hooks stores, injects or sends.

Every prompt, Bash command and tool output passes through :func:`redact`
before it becomes a memory, so this module sits in the hot path of every
Claude Code hook. Hence: stdlib only, every pattern compiled once (on first use),
and patterns shaped for Python's regex engine, which is fast only when a
pattern starts with a literal it can look for as a plain substring:

* each pattern starts with a literal (``sk-ant-``, ``AKIA``...); word-boundary
  checks come right after the literal, as a lookbehind;
* case-insensitive rules run on a lower-cased copy of the text (same length,
  same offsets), so that they too start with a literal;
* no repeat can backtrack super-linearly: each is over a class that cannot
  overlap what follows it, or bounded;
* after the two multi-line rules, the text is handled in line-aligned chunks,
  so the copies made when a rule edits the text stay small.

A secret becomes ``[REDACTED:<kind>]`` and the text around it is kept, so a
memory still says *what* was done (``export OPENAI_API_KEY=[REDACTED:openai_key]``)
without saying *with what*. ``<private>...</private>`` spans become ``[PRIVATE]``.

Rules run in a fixed order: ``<private>`` first (it swallows whatever it
contains), then formats recognisable on their own (``ghp_...``, ``AKIA...``),
then secrets recognisable only by their context (``DB_PASSWORD=...``), then the
generic high-entropy rule. No rule matches a marker, and the rules are applied
again until they change nothing (see ``_redact_lines``), which together make
``redact`` idempotent.

Recall is traded for precision where code is concerned: ``token = Error``,
``password: str``, ``api_key=api_key`` or ``:param token: the token`` are left
alone, so a value that looks like code next to a secret-sounding name may be
missed; the formats recognisable on their own are caught wherever they appear.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from .patterns import lazy

__all__ = ["KINDS", "PRIVATE_MARK", "contains_secret", "cut_head", "cut_tail", "redact", "redact_head", "redact_obj"]

PRIVATE_MARK = "[PRIVATE]"

#: A replacement: the span of the text to replace and what to put there.
_Edit = tuple[int, int, str]


def _mark(kind: str) -> str:
    return f"[REDACTED:{kind}]"


class _Rule(NamedTuple):
    """One pattern and how a match of it becomes an edit.

    ``lowered``: the pattern is written in lower case and runs on the
    lower-cased text (a case-insensitive rule that still starts with a literal).
    ``edit``: turns a match and the original text into an edit, or ``None`` to
    leave the match alone; by default the group named ``secret`` (or the whole
    match) becomes the marker of ``kind``.
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


# A value that is already a marker is not redacted again (the lower-cased and
# the original spelling).
_NOT_MARK = r"(?!\[redacted:|\[private\])"
_NOT_MARK_CASED = r"(?!\[REDACTED:|\[PRIVATE\])"


def _line_start(text: str, pos: int) -> int:
    """Where the line holding ``pos`` starts, looking back 500 characters at most."""
    window = max(0, pos - 500)
    return text.rfind("\n", window, pos) + 1 or window


def _starts_with_mark(text: str, pos: int) -> bool:
    return text.startswith("[REDACTED:", pos) or text.startswith(PRIVATE_MARK, pos)


# Values that name a secret without holding it: variables, templates, masks,
# examples and Key Vault references.
_REFERENCE = lazy(
    r"""(?ix)
    [$%{#] | <[^<>]*>$ | \[[^\[\]]*\]$ | your[\s_\-] | x{3,}$ | .*(?:\.\.\.|\*\*\*|…)
    | (?:password|passwd|pwd|secret|token|api[_\-]?key|redacted|none|null|value|example|placeholder)$
    | @microsoft\.keyvault\( | (?:kv|keyvault|azure-keyvault|vault)://
    | https://[\w.\-]+\.vault\.azure\.net/secrets/
    """
)


def _is_reference(value: str) -> bool:
    """True for empty values, placeholders, masked values and Key Vault references.

    Placeholders: $VAR, ${VAR}, %s, {}, {{ x }}, <token>, [PAD], your-key, xxx, hf_***, sk-...
    """
    return not value or _REFERENCE.match(value) is not None


def _masked(text: str, end: int) -> bool:
    """Whether a value ending at ``end`` goes on as a mask: ``Bearer hf_***``, ``sk-...``."""
    return text.startswith(("***", "...", "…"), end)


_HAS_DIGIT = lazy(r"\d").search
_HAS_LETTER = lazy(r"[A-Za-z]").search
_SEPARATORS = lazy(r"[_\-]")
_IDENTIFIER = lazy(r"[A-Za-z_][A-Za-z0-9_\-]*")


def _names_itself(value: str, keyword: str) -> bool:
    """Whether ``value`` is an identifier holding the keyword: ``api_key=api_key``, "AZURE_PASSWORD"."""
    squashed = _SEPARATORS.sub("", value.lower())
    return _SEPARATORS.sub("", keyword.lower()) in squashed and _IDENTIFIER.fullmatch(value) is not None


# --- multi-line rules: <private> and PEM private keys ------------------------

# An unclosed tag hides everything after it: better too much than a leak.
_PRIVATE = lazy(r"<private(?:\s[^<>]{0,200})?>[^<]*(?:<(?!/private\s*>)[^<]*)*(?:</private\s*>)?")


def _private(match: re.Match[str], text: str) -> _Edit:
    return match.start(), match.end(), PRIVATE_MARK


_PRIVATE_RULE = _Rule("private", _PRIVATE, lowered=True, edit=_private)

_PEM_BODY_CHAR = r"[A-Za-z0-9+/=\s:,.\\]"  # base64, headers (Proc-Type: 4,ENCRYPTED), JSON "\n"

_PEM = lazy(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # Only with a body: a bare header (a constant in a PEM parser) is no key.
    r"(?=(?:\s|\\[nr])*(?:Proc-Type:|[A-Za-z0-9+/=]{16}))"
    # The body, up to the END line; an unclosed key ends where the body does.
    + rf"{_PEM_BODY_CHAR}*(?:-(?!----){_PEM_BODY_CHAR}*)*"
    + r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
)

_PEM_RULE = _Rule("private_key", _PEM)


# --- formats recognisable on their own -----------------------------------------


def _token(prefix: str, body: str) -> re.Pattern[str]:
    """``prefix`` + ``body`` with no word character before the prefix.

    The boundary check is a lookbehind placed after the literal prefix, so the
    regex engine can still look for the prefix as a plain substring.
    """
    literal = re.escape(prefix)
    return lazy(literal + rf"(?<![A-Za-z0-9_]{literal})" + body)


_END = r"(?![A-Za-z0-9_])"


def _with_digit(match: re.Match[str], text: str) -> _Edit | None:
    # "sk-some-long-branch-name" is not an OpenAI key: real keys hold digits.
    return _default_edit(match, "openai_key") if _HAS_DIGIT(match.group()) else None


_AZURE_CLIENT_SECRET = lazy(
    # Entra ID client secrets: 3 chars, a digit, "Q~", 31-34 chars. The match
    # starts at the literal "Q~"; the edit reaches back over the first 4 chars.
    r"Q~(?<=(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}\dQ~)[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])"
)


def _azure_client_secret(match: re.Match[str], text: str) -> _Edit:
    return match.start() - 4, match.end(), _mark("azure_client_secret")


_AWS_KEY_PREFIXES = "KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA"

_FORMATS = [
    # Anthropic before OpenAI: "sk-ant-..." also fits the OpenAI shape.
    _Rule("anthropic_key", _token("sk-ant-", r"[A-Za-z0-9_\-]{20,}")),
    _Rule("openai_key", _token("sk-", r"[A-Za-z0-9_\-]{20,}"), edit=_with_digit),
    _Rule("aws_key", _token("A", rf"(?:{_AWS_KEY_PREFIXES})[A-Z0-9]{{16}}" + _END)),
    _Rule("github_token", _token("gh", r"[pousr]_[A-Za-z0-9]{36,255}" + _END)),
    _Rule("github_token", _token("github_pat_", r"[A-Za-z0-9_]{22,255}" + _END)),
    _Rule("gitlab_token", _token("glpat-", r"[A-Za-z0-9_\-]{20,}")),
    _Rule("slack_token", _token("xox", r"[abposr]-[A-Za-z0-9\-]{10,}")),
    _Rule(
        "slack_webhook",
        lazy(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}"),
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


def _connection_string_part(name: str) -> re.Pattern[str]:
    """``Name=value`` inside a connection string, on lower-cased text."""
    return lazy(rf"{name}(?<![\w-]{name})[ \t]*=[ \t]*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)")


_AZURE = [
    _Rule("azure_key", _connection_string_part("accountkey"), lowered=True),
    _Rule("azure_key", _connection_string_part("sharedaccesskey"), lowered=True),
    _Rule("azure_sas", _connection_string_part("sharedaccesssignature"), lowered=True),
    _Rule("azure_sas", lazy(r"sig=(?<=[?&;]sig=)" + _NOT_MARK_CASED + r"(?P<secret>[A-Za-z0-9%+/=]{10,})")),
]


# --- secrets known by their context --------------------------------------------

_AWS_SECRET = lazy(
    # secret_access_key = X, "SecretAccessKey": "X", aws configure set aws_secret_access_key X
    r"secret_?(?:access_?)?key[\"']?(?:[ \t]*[:=][ \t]*|[ \t]+)[\"']?(?P<secret>[a-z0-9/+]{40})(?![a-z0-9/+=])"
)

_URL_PASSWORD = lazy(
    r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\"'<>\[\]]{1,256}:"
    + _NOT_MARK_CASED
    + r"(?P<secret>[^\s@/?#\"'<>\[\]]{1,256})@(?=[\w\[])"
)

_ALL_CAPS = lazy(r"[A-Z_]+")


def _url_password(match: re.Match[str], text: str) -> _Edit | None:
    value = match.group("secret")
    if _is_reference(value) or _ALL_CAPS.fullmatch(value):
        return None  # https://user:$PASS@host, gist://username:TOKEN@id
    return _default_edit(match, "password")


_TOKEN_CHARS = r"[a-z0-9\-._~+/]"  # RFC 6750 b64token ("=" padding apart), lower-cased
_SCHEMES = r"(?:bearer|basic|token|digest|bot|sso-key)"

_AUTH_HEADER = lazy(
    r"authorization(?<![\w]authorization)[\"']?[ \t]*[:=][ \t]*[\"']?"
    + _NOT_MARK
    + rf"(?:(?P<scheme>{_SCHEMES})[ \t]+(?P<secret>{_TOKEN_CHARS}+=*)"
    # Without a scheme, only a long token with a digit: not `request.headers.get`.
    + rf"|(?!{_SCHEMES}\b)(?={_TOKEN_CHARS}{{0,200}}\d)(?P<bare>{_TOKEN_CHARS}{{20,}}=*))"
)


def _auth_header(match: re.Match[str], text: str) -> _Edit | None:
    kind = "basic_auth" if match.group("scheme") == "basic" else "bearer_token"
    start, end = match.span("secret" if match.start("secret") >= 0 else "bare")
    if _is_reference(text[start:end]) or _masked(text, end):
        return None  # "Authorization: Basic ...", "Bearer hf_***"
    return start, end, _mark(kind)


def _bare_bearer(match: re.Match[str], text: str) -> _Edit | None:
    return None if _masked(text, match.end()) else _default_edit(match, "bearer_token")


_BARE_BEARER = lazy(
    rf"bearer(?<![\w]bearer)[ \t]+(?={_TOKEN_CHARS}{{0,200}}\d)(?P<secret>{_TOKEN_CHARS}{{16,}}=*)"
)

_USER_FLAG = lazy(
    r"-(?<![\w-]-)(?:u|-user)[ \t=]+[\"']?[^\s:\"'\[\]]{1,256}:" + _NOT_MARK_CASED + r"(?P<secret>[^\s\"']{1,256})"
)
_CURL = lazy(r"\bcurl\b")


def _curl_user(match: re.Match[str], text: str) -> _Edit | None:
    # "-u user:pass" is a password only for curl: "docker run -u 1000:1000" is not.
    start = match.start()
    found = text.rfind("curl", _line_start(text, start), start)
    if found < 0 or _CURL.match(text, found) is None:
        return None
    return _default_edit(match, "password")


_CLI_FLAG = lazy(
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

_METAVAR = lazy(r"[A-Z_]+[\])}]*")  # "--token TOKEN" in --help output
_SYMBOL = lazy(r"[^A-Za-z]").search


def _cli_flag(match: re.Match[str], text: str) -> _Edit | None:
    group = _value_group(match)
    start, end = match.span(group)
    value = text[start:end]
    flag = match.group("flag")
    if _is_reference(value) or _METAVAR.fullmatch(value) or _names_itself(value, flag.split("-")[-1]):
        return None
    if group == "bare" and text[match.start("bare") - 1] != "=" and not _SYMBOL(value):
        return None  # "--password options" in prose; a real "--token X" has digits or symbols
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
    ("credentials", "credentials"),
)

_ASSIGN_VALUE = (
    r"(?P<tail>[a-z0-9_.\-]{0,40})"
    r"(?P<sep>(?P<name_quote>\\?[\"'])?[ \t]*(?::=|=>|=(?![=~])|(?P<colon>:)(?![:/]))[ \t]*)"
    + r"(?:\\?\""
    + _NOT_MARK
    + r"(?P<dq>[^\"\\\n]{0,1024})\\?\"|\\?'"
    + _NOT_MARK
    + r"(?P<sq>[^'\\\n]{0,1024})\\?'|"
    + _NOT_MARK
    + r"(?P<bare>[^\s\"'`,;|<>(){}\[\]]{1,1024})(?P<call>[(\[]?))"
)

# After "name: value" only the end of the line may follow (YAML, headers), not
# more words (":param token: the token to use", "password: see below").
_LINE_END = lazy(r"[ \t]*(?:#|$)", re.MULTILINE)

# The words that may follow the keyword in the name of a secret: DB_PASSWORD,
# SECRET_KEY, apiKeyValue, TOKEN_PROD. Anything else names something about a
# secret (TOKEN_COUNT, secretName, PASSWORD_FILE, token_type, ACCESS_KEY_ID).
_SECRET_NAME_TAILS = frozenset(
    """key keys secret token password passwd pass pwd access private api auth client base
    value b64 base64 hex enc encrypted raw plain plaintext prod production dev
    development staging stage test testing local live old new current primary secondary
    default""".split()
)

# Type annotations and literals: "password: str", "token = None", "api_key: Optional[str]".
_CODE_WORDS = frozenset(
    """str string int float bool boolean bytes dict list any optional none null nil true
    false undefined number object secretstr secretbytes union self cls void await async
    lambda not new""".split()
)

_TAIL_WORDS = lazy(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ATTRIBUTE = lazy(r"~?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")  # settings.db_pw, ~azure.core.X
_VARIABLE = lazy(r"[A-Za-z]+(?:_[A-Za-z]+)+")  # access_token, OPENAI_KEY: names, not values
_WORD = lazy(r"[A-Za-z_]+")  # token = Error, use_auth_token=auth: in code, a name
_NUMBER = lazy(r"-?\d{1,5}(?:\.\d+)?")  # token = 0, token_pos = -1
_TYPE_NAME = lazy(r"~?(?:[A-Z][A-Z0-9]*[a-z][a-z0-9]*)+")  # credential: TokenProvider
# After a quoted value, code goes on: "{0}:{1}".format(x), ",".join(x), "a" + b.
_CODE_AFTER_QUOTE = lazy(r"[.(\[]|[ \t]*[+%*]")


def _names_a_secret(keyword: str, tail: str) -> bool:
    """Whether ``<prefix><keyword><tail>`` is the name of a secret value."""
    if tail.startswith("."):
        return False  # self.token.expiry, token.json
    if tail and tail[0].isalpha() and not (keyword[-1].islower() and tail[0].isupper()):
        return False  # the keyword is part of a longer word: tokens, tokenizer, secretary
    return all(word.isdigit() or word.lower() in _SECRET_NAME_TAILS for word in _TAIL_WORDS.findall(tail))


def _in_string(text: str, keyword_start: int) -> bool:
    """Whether the keyword sits inside a string literal opened earlier on its line."""
    before = text[_line_start(text, keyword_start) : keyword_start]
    return before.count('"') % 2 == 1 or before.count("'") % 2 == 1


def _is_type_name(value: str) -> bool:
    """TokenProvider, AzureKeyCredential, Optional: a type, where Hunter2 is a password."""
    return _TYPE_NAME.fullmatch(value) is not None and (not _HAS_DIGIT(value) or len(_TAIL_WORDS.findall(value)) > 2)


def _is_code(value: str, keyword: str, spaced: bool, colon: bool) -> bool:
    """Whether an unquoted value is an expression, a name or a type rather than a secret.

    A bare word is a name in code (``token = Error``, ``use_auth_token=auth``)
    but a value in a .env file, whose names are upper case (``DB_PASSWORD=hunter``).
    """
    value = value.rstrip(":")  # lambda token=token: token
    return (
        _NUMBER.fullmatch(value) is not None
        or value.lower().split("|", 1)[0] in _CODE_WORDS
        or _ATTRIBUTE.fullmatch(value) is not None
        or _VARIABLE.fullmatch(value) is not None
        or _names_itself(value, keyword)
        or (not colon and (spaced or not keyword.isupper()) and _WORD.fullmatch(value) is not None)
        or (colon and _is_type_name(value))
    )


def _quoted_is_code(match: re.Match[str], text: str, value: str, colon: bool) -> bool:
    """Whether a quoted value is code or prose rather than a secret."""
    return (
        _CODE_AFTER_QUOTE.match(text, match.end()) is not None  # "{0}:{1}".format(x)
        or (colon and _is_type_name(value))  # credential: "AzureKeyCredential"
        or value.count(" ") >= 4  # "--token": "Use a User Access Token. Prefer ..."
    )


def _assignment(kind: str) -> Callable[[re.Match[str], str], _Edit | None]:
    def edit(match: re.Match[str], text: str) -> _Edit | None:
        group = _value_group(match)
        start, end = match.span(group)
        bare, colon = group == "bare", match.start("colon") >= 0
        if bare and colon and not _LINE_END.match(text, end):
            return None  # checked first: it is the cheapest test and the most common miss
        if bare and not colon and "&" in text[start:end]:
            end = text.index("&", start)  # ?token=abc&page=2; YAML (colon) keeps "p&ss"
        keyword, value = text[match.start() : match.end("kw")], text[start:end]
        if not _names_a_secret(keyword, text[slice(*match.span("tail"))]):
            return None
        if len(value) < 4 or _is_reference(value) or _masked(text, end) or _names_itself(value, keyword):
            return None
        spaced = match.group("sep")[-1:] in (" ", "\t")
        if (colon or spaced) and match.start("name_quote") < 0 and _in_string(text, match.start()):
            return None  # "Unexpected token: '{}'", getpass("Password: ")
        if not bare:
            return None if _quoted_is_code(match, text, value, colon) else (start, end, _mark(kind))
        if match.group("call") or _starts_with_mark(text, end) or _is_code(value, keyword, spaced, colon):
            return None  # password=getpass(), token=self.[REDACTED:...] (a later rule's work)
        return start, end, _mark(kind)

    return edit


_ASSIGNMENTS = [
    _Rule(kind, lazy(rf"(?P<kw>{keyword})" + _ASSIGN_VALUE), lowered=True, edit=_assignment(kind))
    for keyword, kind in _ASSIGN_KEYWORDS
]

_CONTEXT = [
    _Rule("aws_secret", _AWS_SECRET, lowered=True),
    _Rule("password", _URL_PASSWORD, edit=_url_password),
    _Rule("bearer_token", _AUTH_HEADER, lowered=True, edit=_auth_header),
    _Rule("bearer_token", _BARE_BEARER, lowered=True, edit=_bare_bearer),
    _Rule("password", _USER_FLAG, edit=_curl_user),
    _Rule("password", _CLI_FLAG, edit=_cli_flag),
    *_ASSIGNMENTS,
]


# --- generic high entropy ------------------------------------------------------

# Runs of base64/base64url characters, "=" only as trailing padding (not
# followed by more run characters) so that NAME=value splits in two. A run
# must follow a character outside the run class (the text start is checked
# apart, see _matches): a leading class lets the engine skip most positions,
# where a lookbehind would try every one.
_RUN_CLASS = r"[A-Za-z0-9+/_\-]"
_RUN_BODY = rf"{_RUN_CLASS}{{32,}}(?:={{1,2}}(?!{_RUN_CLASS}))?"
_RUN = lazy(rf"[^A-Za-z0-9+/_\-](?P<secret>{_RUN_BODY})")
_RUN_AT_START = lazy(rf"(?P<secret>{_RUN_BODY})")
_MAX_RUN = 1024  # longer runs are data (images, archives), not credentials
_AZURE_ACCOUNT_KEY = lazy(r"[A-Za-z0-9+/]{86}==")  # 64 random bytes in base64
# High entropy by design, and public: SSH public keys, data: URIs, SRI hashes.
_PUBLIC_BEFORE = lazy(r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|base64,)[ \t]?\Z")
_SRI = lazy(r"sha(?:1|256|384|512)-")

_HEX = lazy(r"(?:0[xX])?[0-9a-fA-F]+")
_HEX_PREFIX = lazy(r"[0-9a-fA-F]*")
_PART_SPLIT = lazy(r"[/_\-]+")
_HUMPS = lazy(r"[A-Z]*[a-z]+|[A-Z]+|[0-9]+")
_VOWEL = lazy(r"[aeiouyAEIOUY]").search
_NOT_ALNUM = lazy(r"[^A-Za-z0-9]")
_CLASS_RUNS = lazy(r"[a-z]+|[A-Z]+|[0-9]+")
_DIGIT_GROUPS = lazy(r"[0-9]+")

# n * log2(n) for every count a run of at most _MAX_RUN characters can hold.
_N_LOG_N = [0.0] + [n * math.log2(n) for n in range(1, _MAX_RUN + 1)]


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character (``text`` at most ``_MAX_RUN`` long)."""
    size = len(text)
    return math.log2(size) - sum(map(_N_LOG_N.__getitem__, Counter(text).values())) / size


def _is_word_like(part: str) -> bool:
    """Whether ``part`` is made of words, short acronyms and short numbers.

    QDQDisableWeightAdjustForInt32Bias and HuggingFaceH4 are; random tokens
    are not (they have lone lower-case letters and vowel-less letter runs).
    """
    for match in _HUMPS.finditer(part):
        hump = match.group()
        if hump[-1].islower():
            lower = hump.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            if len(lower) < 2 or len(hump) - len(lower) > 4 or not _VOWEL(hump):
                return False
        elif len(hump) > 4:
            return False
    return True


def _is_benign_part(part: str) -> bool:
    """Whether a part of a run is a word, a number, hex, or an identifier."""
    if len(part) < 10 or part.isalpha() or part.isdigit() or _HEX.fullmatch(part):
        return True
    if _HEX_PREFIX.match(part).end() * 10 >= len(part) * 9:
        return True  # a hex digest with a suffix: #diff-<sha256>R61
    return part.lower() != part.upper() and part != part.upper() and _is_word_like(part)


def _looks_random(run: str) -> bool:
    """Whether a long base64-ish run looks like a random credential.

    Random tokens mix letters and digits all along (thresholds measured on
    random base36/base62/base64 tokens: about 1% of 40-char ones slip through).
    Identifiers, paths, model names, UUIDs and hex digests (commit SHAs,
    sha256) either do not, or are made of parts that each are a word, a number,
    hex or an identifier.
    """
    if not (_HAS_DIGIT(run) and _HAS_LETTER(run)):
        return False
    alnum = _NOT_ALNUM.sub("", run)
    changes = (_CLASS_RUNS.subn("", alnum)[1] - 1) / max(1, len(alnum) - 1)
    if changes < 0.35 and _DIGIT_GROUPS.subn("", run)[1] < 4:
        return False
    if all(_is_benign_part(part) for part in _PART_SPLIT.split(run)):
        return False
    return _entropy(run) >= 3.7


def _random_segments(run: str) -> tuple[int, int] | None:
    """In a path or URL, the span from the first to the last random segment of 32+ chars."""
    spans, offset = [], 0
    for segment in run.split("/"):
        if 32 <= len(segment) <= _MAX_RUN and _looks_random(segment):
            spans.append((offset, offset + len(segment)))
        offset += len(segment) + 1
    return (spans[0][0], spans[-1][1]) if spans else None


def _high_entropy(match: re.Match[str], text: str) -> _Edit | None:
    start, end = match.span("secret")
    run = match.group("secret")
    before = text[max(0, start - 24) : start]
    if ("ssh-" in before or "ecdsa-" in before or "base64," in before) and _PUBLIC_BEFORE.search(before):
        return None
    if _AZURE_ACCOUNT_KEY.fullmatch(run):
        return start, end, _mark("azure_key")
    core = run.rstrip("=")
    if _SRI.match(core) or core.startswith("eyJ") or _masked(text, end):
        return None  # an integrity hash, base64 JSON (a JWT header, claims), a masked value
    if core.startswith("/") or before[-1:] in (".", "~", ":"):
        span = _random_segments(core)  # judge each segment of a path or URL on its own
        return None if span is None else (start + span[0], start + span[1], _mark("high_entropy"))
    if len(core) > _MAX_RUN or not _looks_random(core):
        return None
    return start, end, _mark("high_entropy")


_GENERIC = _Rule("high_entropy", _RUN, edit=_high_entropy)


# --- applying the rules ---------------------------------------------------------

# Rules whose matches never span a line break (every one after the PEM rule).
_LINE_RULES = (*_FORMATS, *_AZURE, *_CONTEXT, _GENERIC)

#: Every kind that can appear in a ``[REDACTED:<kind>]`` marker.
KINDS = frozenset({rule.kind for rule in (_PEM_RULE, *_LINE_RULES)} | {"azure_key", "basic_auth"})

_CHUNK = 1 << 16  # characters per line-aligned chunk


def _lower(text: str) -> str:
    """``text`` lower-cased with its length kept, so offsets stay valid.

    U+0130 (capital I with dot above) is the one character whose lower case
    is two characters long.
    """
    if not text.isascii() and "\u0130" in text:
        text = text.replace("\u0130", "I")
    return text.lower()


def _matches(rule: _Rule, subject: str) -> Iterable[re.Match[str]]:
    """The matches of ``rule`` in ``subject``, with the generic rule's run at the very start."""
    if rule is not _GENERIC:
        prefix = getattr(rule.pattern, "prefix", "")
        if prefix and prefix not in subject:
            return ()  # every match starts with it: the pattern need not even be compiled
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


def _chunks(text: str) -> Iterator[str]:
    """``text`` cut after line breaks into pieces of about ``_CHUNK`` characters."""
    start = 0
    while len(text) - start > _CHUNK:
        cut = text.find("\n", start + _CHUNK) + 1
        if not cut:
            break
        yield text[start:cut]
        start = cut
    yield text[start:]


_MAX_PASSES = 4


def _apply_line_rules(state: _Text) -> bool:
    """One pass of every line rule; return whether the text changed."""
    return any([state.apply(rule) for rule in _LINE_RULES])


def _settle(lines: str) -> str:
    """Apply the line rules to ``lines`` until a pass changes nothing."""
    state = _Text(lines)
    for _ in range(_MAX_PASSES):
        if not _apply_line_rules(state):
            break
    return state.text


def _redact_lines(text: str) -> str:
    """Apply the line rules to ``text`` until nothing changes.

    One pass is not always enough: a rule's decision can depend on text that
    a later rule edits (a value next to a run the generic rule redacts), so a
    second pass may find more; repeating until a pass changes nothing is what
    makes ``redact`` idempotent. No line rule looks across a line break, so
    the later passes need only the lines the first one changed, and every
    change leaves a marker.
    """
    state = _Text(text)
    if not _apply_line_rules(state):
        return text
    lines = state.text.split("\n")
    changed = [number for number, line in enumerate(lines) if "[REDACTED:" in line]
    settled = _settle("\n".join(lines[number] for number in changed)).split("\n")
    for number, line in zip(changed, settled):
        lines[number] = line
    return "\n".join(lines)


def redact(text: str) -> str:
    """Return ``text`` with secrets replaced by ``[REDACTED:<kind>]`` and private spans by ``[PRIVATE]``.

    Anything that is not a ``str`` is returned unchanged. ``redact(redact(x)) == redact(x)``.
    """
    if not isinstance(text, str) or not text:
        return text  # (most fields of a memory are empty: ~15 us each saved on every write)
    state = _Text(text)
    if "<" in text:
        state.apply(_PRIVATE_RULE)
    state.apply(_PEM_RULE)
    if len(state.text) <= _CHUNK:
        return _redact_lines(state.text)
    return "".join(map(_redact_lines, _chunks(state.text)))


#: How far past a cut :func:`cut_head` / :func:`cut_tail` look for whitespace (no secret format is longer).
CUT_SLACK = 4096
_SPACE = lazy(r"\s")


def cut_head(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text`` or a little more: up to the next whitespace.

    Cutting inside a token would leave the first half of a secret that no rule
    recognises any more (an ``hf_`` token of 20 characters instead of 34); whole
    tokens keep their shape. A run without whitespace longer than :data:`CUT_SLACK`
    is cut where the slack ends.
    """
    if len(text) <= limit:
        return text
    m = _SPACE.search(text, limit, limit + CUT_SLACK)
    return text[:m.start() if m else limit + CUT_SLACK]


def cut_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text`` or a little more: from the whitespace before them."""
    if len(text) <= limit:
        return text
    start = len(text) - limit
    space = max(text.rfind(c, max(0, start - CUT_SLACK), start + 1) for c in " \n\t")
    return text[space + 1 if space >= 0 else max(0, start - CUT_SLACK):]


def redact_head(text: str, limit: int) -> str:
    """``redact(text)[:limit]``, without redacting the whole of a long text: redact first, cut after."""
    if not isinstance(text, str):
        return text
    return redact(cut_head(text, limit))[:limit]


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
    return any(state.apply(rule) for rule in (_PEM_RULE, *_LINE_RULES))
