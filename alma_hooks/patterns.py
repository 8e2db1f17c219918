"""Regular expressions compiled when first used, not when their module is imported.

Compiling is most of what importing the detectors costs: Python compiles a
pattern in Python code, and ``learning.preferences``, ``learning.outcomes`` and
``redact`` hold ~160 of them, about half of the start-up of a hook that runs
without the engine. A prompt reaches only some of them (50 typical prompts
used 43 of the ~100 patterns of preference and feedback detection), so those
modules declare theirs with :func:`lazy`. A pattern's literal prefix
(:func:`literal_prefix`) lets a caller skip it, compiled or not, for a text
that cannot hold a match.
"""

from __future__ import annotations

import re
from typing import Any

_METHODS = ("search", "match", "fullmatch", "sub", "subn", "finditer", "findall", "split", "pattern", "flags",
            "groups", "groupindex")


class LazyPattern:
    """Stands for ``re.compile(pattern, flags)`` and becomes it on first use.

    After the first attribute access the compiled pattern's methods are set on
    the instance, so later calls cost what calls on a compiled pattern cost.
    """

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._args = (pattern, flags)
        #: What every match starts with ('' when that cannot be told by looking: see literal_prefix).
        self.prefix = "" if flags & (re.IGNORECASE | re.VERBOSE) else literal_prefix(pattern)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_args", "prefix"):
            raise AttributeError(name)
        compiled = re.compile(*self._args)
        for attr in _METHODS:
            setattr(self, attr, getattr(compiled, attr))
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"lazy({self._args[0]!r}, {self._args[1]})"


_SPECIAL = set(".^$*+?{}[]|()\\")
_QUANTIFIERS = set("*+?{")


def literal_prefix(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with; '' when there is none or it is unclear.

    Read off the pattern's source, conservatively: plain characters and
    escaped punctuation up to the first other construct, less a last character
    that a quantifier follows (it may occur zero times); nothing at all when
    the pattern has an alternation outside any group or class, or starts with
    a group, class, anchor or inline flag.
    """
    depth, in_class, i = 0, False, 0
    while i < len(pattern):  # an alternation at the top level: a match may start with its other branch
        c = pattern[i]
        if c == "\\":
            i += 1
        elif in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return ""
        i += 1
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1:i + 2]
            if not nxt or nxt.isalnum() or nxt == "_":
                break  # \d, \b, \1...: not a literal character
            char, width = nxt, 2
        elif c in _SPECIAL:
            break
        else:
            char, width = c, 1
        if pattern[i + width:i + width + 1] in _QUANTIFIERS:
            break
        out.append(char)
        i += width
    return "".join(out)


def lazy(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A pattern compiled on first use (typed as the compiled pattern it becomes)."""
    return LazyPattern(pattern, flags)  # type: ignore[return-value]
