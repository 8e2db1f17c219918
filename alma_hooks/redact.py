"""Secret redaction for everything alma-hooks stores, injects or sends.

Every prompt, Bash command and tool output passes through :func:`redact`
before it becomes a memory, so this module sits in the hot path of every
Claude Code hook. Hence: stdlib only, every pattern compiled once at import,
and no pattern that can backtrack super-linearly (each repeat is either over a
character class that cannot overlap what follows it, or bounded).

A secret becomes ``[REDACTED:<kind>]`` and the text around it is kept, so a
memory still says *what* was done (``export OPENAI_API_KEY=[REDACTED:openai_key]``)
without saying *with what*. ``<private>...</private>`` spans become ``[PRIVATE]``.

Rules run in a fixed order: ``<private>`` first (it swallows whatever it
contains), then formats recognisable on their own (``ghp_...``, ``AKIA...``),
then secrets recognisable only by their context (``DB_PASSWORD=...``), then the
generic high-entropy rule. A later rule never matches an earlier rule's marker,
which is what makes ``redact`` idempotent.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable, NamedTuple

__all__ = ["KINDS", "PRIVATE_MARK", "contains_secret", "redact", "redact_obj"]

PRIVATE_MARK = "[PRIVATE]"


def _mark(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# A value that is already a marker (or a variable reference) is not a secret.
_NOT_MARK = r"(?!\[REDACTED:|\[PRIVATE\])"


class _Rule(NamedTuple):
    """One pattern, the kind its secret is reported as, and how to replace it.

    ``needles``: literal substrings of which at least one must be in the text
    for the rule to be tried at all, a cheap skip for the common case.
    ``replace``: builds the replacement from a match; ``None`` means "replace
    the group named ``secret`` (or the whole match) by the marker".
    """

    kind: str
    pattern: re.Pattern[str]
    needles: tuple[str, ...] = ()
    replace: Callable[[re.Match[str]], str] | None = None


# --- values that only name a secret -----------------------------------------

_REFERENCE = re.compile(
    r"""(?ix)
    \$ | %\( | \{\{ | <[^>]*>$ | \*+$ | x{3,}$ | \.\.\.$    # $VAR ${VAR} %(x)s {{ x }} <token> *** xxx ...
    | @microsoft\.keyvault\( | (?:kv|keyvault|azure-keyvault|vault)://
    | https://[\w.-]+\.vault\.azure\.net/secrets/           # Key Vault references
    """
)


def _is_reference(value: str) -> bool:
    """True for placeholders and Key Vault references, which are safe to keep."""
    return not value or _REFERENCE.match(value) is not None


# --- <private> ------------------------------------------------------------------

# An unclosed tag hides everything after it: better too much than a leak.
_PRIVATE = re.compile(r"<private\b[^<>]{0,200}>.*?(?:</private\s*>|\Z)", re.IGNORECASE | re.DOTALL)


# --- self-identifying formats ------------------------------------------------

_B = r"(?<![A-Za-z0-9_])"  # token start: no word character before
_E = r"(?![A-Za-z0-9_])"  # token end

_PEM = re.compile(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    # The body, up to the END line or (unclosed) the next "-----" or the end.
    r"[^-]*(?:-(?!----)[^-]*)*"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
)

_FORMATS: list[_Rule] = [
    _Rule("private_key", _PEM, ("PRIVATE KEY",)),
    # Anthropic before OpenAI: "sk-ant-..." also fits the OpenAI shape.
    _Rule("anthropic_key", re.compile(_B + r"sk-ant-[A-Za-z0-9_\-]{20,}"), ("sk-ant-",)),
    _Rule(
        "openai_key",
        # A digit is required so that "sk-some-long-branch-name" is left alone.
        re.compile(_B + r"sk-(?:proj-|svcacct-|admin-)?(?=[A-Za-z0-9_\-]{0,200}\d)[A-Za-z0-9_\-]{20,}"),
        ("sk-",),
    ),
    _Rule(
        "aws_key",
        re.compile(_B + r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}" + _E),
        ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"),
    ),
    _Rule(
        "github_token",
        re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})" + _E),
        ("gh", "github_pat_"),
    ),
    _Rule("gitlab_token", re.compile(_B + r"glpat-[A-Za-z0-9_\-]{20,}"), ("glpat-",)),
    _Rule("slack_token", re.compile(_B + r"xox[abposr]-[A-Za-z0-9\-]{10,}"), ("xox",)),
    _Rule(
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}"),
        ("hooks.slack.com",),
    ),
    _Rule("stripe_key", re.compile(_B + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"), ("_live_", "_test_")),
    _Rule("google_api_key", re.compile(_B + r"AIza[A-Za-z0-9_\-]{35}" + r"(?![A-Za-z0-9_\-])"), ("AIza",)),
    _Rule("npm_token", re.compile(_B + r"npm_[A-Za-z0-9]{36}" + _E), ("npm_",)),
    _Rule(
        "sendgrid_key",
        re.compile(_B + r"SG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}(?![A-Za-z0-9_\-])"),
        ("SG.",),
    ),
    _Rule("twilio_key", re.compile(_B + r"SK[0-9a-fA-F]{32}" + _E), ("SK",)),
    _Rule("huggingface_token", re.compile(_B + r"hf_[A-Za-z0-9]{30,}" + _E), ("hf_",)),
    _Rule("pypi_token", re.compile(_B + r"pypi-AgE[A-Za-z0-9_\-]{50,}"), ("pypi-",)),
    _Rule(
        "jwt",
        re.compile(_B + r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
        ("eyJ",),
    ),
    _Rule(
        # Entra ID (Azure AD) client secrets: 3 chars, a digit, "Q~", 31-34 chars.
        "azure_client_secret",
        re.compile(r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])"),
        ("Q~",),
    ),
]


# --- Azure connection strings and SAS ----------------------------------------

_AZURE: list[_Rule] = [
    _Rule(
        "azure_key",
        re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey)\s*=\s*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)"),
        ("ccountKey", "ccountkey", "ccessKey", "ccesskey", "ACCOUNTKEY", "ACCESSKEY"),
    ),
    _Rule(
        "azure_sas",
        re.compile(r"(?i)\bSharedAccessSignature\s*=\s*" + _NOT_MARK + r"(?P<secret>[^;\"'\s<>]+)"),
        ("ignature", "IGNATURE"),
    ),
    _Rule(
        "azure_sas",
        re.compile(r"(?<=[?&;])sig=" + _NOT_MARK + r"(?P<secret>[A-Za-z0-9%+/=]{10,})"),
        ("sig=",),
    ),
    # A bare storage/Cosmos account key: 64 random bytes are 86 base64 chars + "==".
    _Rule(
        "azure_key",
        re.compile(r"(?<![A-Za-z0-9+/=\-])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])"),
        ("==",),
    ),
]


# --- secrets known by their context -----------------------------------------

_AWS_SECRET = re.compile(
    r"(?i)(?:aws_?)?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?"
    r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)

_URL_PASSWORD = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/?#@\"'<>]{1,256}:"
    + _NOT_MARK
    + r"(?P<secret>[^\s@/?#\"'<>]{1,256})@"
)

_TOKEN_CHARS = r"[A-Za-z0-9\-._~+/]"  # RFC 6750 b64token, "=" padding apart
_SCHEMES = r"(?:bearer|basic|token|digest|bot|sso-key)"

_AUTH_HEADER = re.compile(
    r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    + _NOT_MARK
    + rf"(?:(?P<scheme>{_SCHEMES})[ \t]+(?P<secret>{_TOKEN_CHARS}+=*)"
    # Without a scheme, only a long token with a digit: not `request.headers.get`.
    + rf"|(?!{_SCHEMES}\b)(?={_TOKEN_CHARS}{{0,200}}\d)(?P<bare>{_TOKEN_CHARS}{{20,}}=*))"
)

_BARE_BEARER = re.compile(
    rf"(?i)\bbearer[ \t]+(?={_TOKEN_CHARS}{{0,200}}\d)(?P<secret>{_TOKEN_CHARS}{{16,}}=*)"
)

_CURL_USER = re.compile(
    r"\bcurl\b[^\n]{0,2000}?[ \t](?:-u|--user)[ \t=]+[\"']?[^\s:\"']{1,256}:"
    + _NOT_MARK
    + r"(?P<secret>[^\s\"']{1,256})"
)

_CLI_FLAG = re.compile(
    r"(?<![\w-])--(?P<flag>password|passwd|token|access-token|auth-token|api-key|api_key|apikey"
    r"|client-secret|secret)(?:=|[ \t]+)"
    + r"(?:\""
    + _NOT_MARK
    + r"(?P<dq>[^\"\n]*)\"|'"
    + _NOT_MARK
    + r"(?P<sq>[^'\n]*)'|"
    + _NOT_MARK
    + r"(?P<bare>[^\s\"'`]+))"
)

_METAVAR = re.compile(r"[A-Z_]+")  # "--token TOKEN" in --help output


def _swap(match: re.Match[str], group: str, kind: str) -> str:
    """The match with ``group`` replaced by the ``kind`` marker."""
    start, end = match.span(group)
    base, whole = match.start(), match.group(0)
    return whole[: start - base] + _mark(kind) + whole[end - base :]


def _first_group(match: re.Match[str], *names: str) -> str:
    """The name of the first of ``names`` that took part in the match."""
    return next(name for name in names if match.group(name) is not None)


def _auth_header(match: re.Match[str]) -> str:
    scheme = (match.group("scheme") or "").lower()
    kind = "basic_auth" if scheme == "basic" else "bearer_token"
    return _swap(match, _first_group(match, "secret", "bare"), kind)


def _cli_flag(match: re.Match[str]) -> str:
    group = _first_group(match, "dq", "sq", "bare")
    value = match.group(group)
    if _is_reference(value) or value.startswith("-") or _METAVAR.fullmatch(value.rstrip("])}")):
        return match.group(0)
    flag = match.group("flag").lower()
    kind = "password" if "pass" in flag else "secret" if "secret" in flag else "api_key" if "key" in flag else "token"
    return _swap(match, group, kind)


# NAME=value, NAME: value, "name": "value", name = 'value', 'name' => 'value' ...
_ASSIGN = re.compile(
    r"(?i)(?P<kw>passw(?:or)?d|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)"
    r"(?P<tail>[A-Za-z0-9_.\-]{0,40})"
    r"\\?[\"']?[ \t]*(?::=|=>|=(?![=~])|:(?![:/]))[ \t]*"
    + r"(?:\\?\""
    + _NOT_MARK
    + r"(?P<dq>[^\"\\\n]{0,1024})|\\?'"
    + _NOT_MARK
    + r"(?P<sq>[^'\\\n]{0,1024})|"
    + _NOT_MARK
    + r"(?P<bare>[^\s\"'`,;&|<>(){}\[\]]{1,1024})(?P<after>[(\[]?))"
)

_ASSIGN_KINDS = {
    "password": "password",
    "passwd": "password",
    "secret": "secret",
    "token": "token",
    "apikey": "api_key",
    "accesskey": "access_key",
    "privatekey": "private_key",
    "credential": "credentials",
    "credentials": "credentials",
}

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


def _looks_like_code(value: str, keyword: str, called: bool) -> bool:
    """Whether an unquoted value is an expression rather than a literal secret."""
    if called:
        return True  # password=getpass(), token = environ["X"]
    lowered = value.lower()
    if _SEPARATORS.sub("", lowered).endswith(_SEPARATORS.sub("", keyword.lower())):
        return True  # api_key=api_key, token=self.token, password=args.db_password
    if lowered.split("|", 1)[0] in _CODE_WORDS:
        return True
    return _ATTRIBUTE.fullmatch(value) is not None  # settings.db_pw, process.env.X


def _assignment(match: re.Match[str]) -> str:
    keyword = match.group("kw")
    if not _names_a_secret(keyword, match.group("tail")):
        return match.group(0)
    group = _first_group(match, "dq", "sq", "bare")
    value = match.group(group)
    if _is_reference(value):
        return match.group(0)
    if group == "bare" and _looks_like_code(value, keyword, bool(match.group("after"))):
        return match.group(0)
    return _swap(match, group, _ASSIGN_KINDS[_SEPARATORS.sub("", keyword.lower())])


_CONTEXT: list[_Rule] = [
    _Rule("aws_secret", _AWS_SECRET),
    _Rule("password", _URL_PASSWORD, ("://",)),
    _Rule("bearer_token", _AUTH_HEADER, replace=_auth_header),
    _Rule("bearer_token", _BARE_BEARER),
    _Rule("password", _CURL_USER, ("curl",)),
    _Rule("password", _CLI_FLAG, ("--",), replace=_cli_flag),
    _Rule("password", _ASSIGN, replace=_assignment),
]


# --- generic high entropy ------------------------------------------------------

# Runs of base64/base64url characters; "=" only as trailing padding so that
# NAME=value splits into two runs.
_RUN = re.compile(r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_PART_SPLIT = re.compile(r"[/_\-]+")
_DIGIT_GROUPS = re.compile(r"\d+")
_MAX_RUN = 1024  # longer runs are data (images, archives), not credentials
# Public or integrity material that is high-entropy by design.
_PUBLIC_PREFIX = re.compile(r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|base64,)\s?$")
_SRI = re.compile(r"sha(?:1|256|384|512)-")


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def _char_class_changes(text: str) -> float:
    """The share of adjacent pairs that switch between lower, upper, digit and other."""

    def klass(char: str) -> int:
        return 0 if char.islower() else 1 if char.isupper() else 2 if char.isdigit() else 3

    classes = [klass(char) for char in text]
    return sum(a != b for a, b in zip(classes, classes[1:])) / (len(text) - 1)


def _is_benign_part(part: str) -> bool:
    return len(part) < 10 or part.isalpha() or part.isdigit() or _HEX.fullmatch(part) is not None


def _is_random(run: str) -> bool:
    """Whether a long base64-ish run looks like a random credential.

    Random tokens mix letters and digits all along; identifiers, paths, model
    names, UUIDs and hex digests (commit SHAs, sha256) do not, or are made of
    parts that each are a word, a number or hex.
    """
    core = run.rstrip("=")
    if len(core) > _MAX_RUN or _SRI.match(core):
        return False
    if not (any(c.isalpha() for c in core) and any(c.isdigit() for c in core)):
        return False
    if all(_is_benign_part(part) for part in _PART_SPLIT.split(core)):
        return False
    if _entropy(core) < 3.7:
        return False
    return _char_class_changes(core) >= 0.35 or len(_DIGIT_GROUPS.findall(core)) >= 4


def _high_entropy(match: re.Match[str]) -> str:
    before = match.string[max(0, match.start() - 24) : match.start()]
    if _PUBLIC_PREFIX.search(before) or not _is_random(match.group(0)):
        return match.group(0)
    return _mark("high_entropy")


_GENERIC = _Rule("high_entropy", _RUN, replace=_high_entropy)


# --- the rule list and the API -----------------------------------------------

_SECRET_RULES: tuple[_Rule, ...] = (*_FORMATS, *_AZURE, *_CONTEXT, _GENERIC)

#: Every kind that can appear in a ``[REDACTED:<kind>]`` marker.
KINDS: frozenset[str] = frozenset(
    {rule.kind for rule in _SECRET_RULES}
    | {"basic_auth", "token", "secret", "api_key", "access_key", "private_key", "credentials"}
)


def _apply(rule: _Rule, text: str) -> str:
    if rule.needles and not any(needle in text for needle in rule.needles):
        return text
    if rule.replace is not None:
        return rule.pattern.sub(rule.replace, text)
    kind = rule.kind
    if "secret" in rule.pattern.groupindex:
        return rule.pattern.sub(lambda match: _swap(match, "secret", kind), text)
    return rule.pattern.sub(_mark(kind), text)


def redact(text: str) -> str:
    """Return ``text`` with secrets replaced by ``[REDACTED:<kind>]`` and private spans by ``[PRIVATE]``.

    Anything that is not a ``str`` is returned unchanged. ``redact(redact(x)) == redact(x)``.
    """
    if not isinstance(text, str):
        return text
    if "<" in text:
        text = _PRIVATE.sub(PRIVATE_MARK, text)
    for rule in _SECRET_RULES:
        text = _apply(rule, text)
    return text


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
    return any(_apply(rule, text) != text for rule in _SECRET_RULES)
