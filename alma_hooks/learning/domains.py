"""Deterministic classification of a task into one of an agent's learning domains.

Keyword evidence, counted on word boundaries in the task text and its steps.
The best-scoring domain among the agent's ``can_learn`` and ``cannot_learn``
wins (ties go to the earlier ``can_learn`` entry); no evidence at all gives
``unclassified``, which is never learned from. A win of a ``cannot_learn``
domain means the task is outside what the agent may learn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..config import AgentProfile

UNCLASSIFIED = "unclassified"

KEYWORDS: dict[str, tuple[str, ...]] = {
    "testing_strategies": ("test", "tests", "testing", "spec", "flaky", "coverage", "e2e", "unit", "integration",
                           "fixture", "fixtures", "mock", "pytest", "jest", "vitest", "playwright", "cypress",
                           "regression", "smoke"),
    "selector_patterns": ("selector", "selectors", "locator", "locators", "data-testid", "testid", "xpath",
                          "getbyrole", "getbylabel", "aria-label", "queryselector"),
    "ui_component_patterns": ("component", "components", "button", "modal", "dropdown", "render", "react", "vue",
                              "props", "storybook", "dialog", "tooltip", "widget", "menu", "carousel", "tab", "tabs"),
    "form_testing": ("form", "forms", "field", "fields", "input", "inputs", "validation", "submit", "required",
                     "checkbox", "signup", "textarea"),
    "accessibility_testing": ("accessibility", "a11y", "aria", "screen reader", "contrast", "keyboard", "wcag",
                              "axe", "focus order"),
    "backend_logic": ("service layer", "business logic", "controller", "worker", "queue", "cron"),
    "database_queries": ("sql", "query", "queries", "join", "index", "postgres", "mysql", "orm"),
    "api_testing_patterns": ("api", "endpoint", "endpoints", "rest", "graphql", "status code", "request",
                             "response", "http", "pagination", "curl", "payload", "openapi", "webhook"),
    "database_validation": ("database", "db", "migration", "migrations", "constraint", "constraints",
                            "transaction", "transactions", "schema", "rows", "foreign key", "table"),
    "error_handling": ("error", "errors", "exception", "exceptions", "retry", "retries", "timeout", "500",
                       "fallback", "traceback", "crash", "failure mode"),
    "performance_testing": ("performance", "latency", "load test", "benchmark", "throughput", "p95", "k6",
                            "locust", "slow", "profiling"),
    "authentication_patterns": ("auth", "authentication", "login", "logout", "token", "jwt", "oauth", "session",
                                "password", "permission", "permissions", "401", "403", "sso"),
    "frontend_styling": ("css", "style", "styling", "layout", "tailwind", "color", "colour", "font",
                         "responsive", "theme"),
    "ui_testing": ("ui test", "ui tests", "screenshot", "visual", "browser", "page object"),
    "coding_workflow": ("refactor", "implement", "feature", "commit", "branch", "review", "pull request",
                        "rename", "cleanup", "add", "update", "change"),
    "tooling": ("npm", "pnpm", "yarn", "pip", "docker", "build", "lint", "linter", "ci", "makefile", "webpack",
                "vite", "dependency", "dependencies", "install"),
    "debugging": ("bug", "fix", "debug", "broken", "failing", "fails", "stack trace", "investigate", "why"),
    "project_conventions": ("convention", "conventions", "naming", "style guide", "structure", "layout of"),
}
_PATTERNS = {d: re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in kws) + r")(?![\w-])", re.I)
             for d, kws in KEYWORDS.items()}


def _candidates(profile: AgentProfile) -> list[str]:
    if profile.can_learn:
        return [*profile.can_learn, *(d for d in profile.cannot_learn if d not in profile.can_learn)]
    return [d for d in KEYWORDS if d not in profile.cannot_learn] + list(profile.cannot_learn)


def score_domains(text: str, domains: Iterable[str]) -> dict[str, int]:
    """Keyword hits of ``text`` per known domain."""
    return {d: len(_PATTERNS[d].findall(text)) for d in domains if d in _PATTERNS}


def classify(text: str, profile: AgentProfile) -> str:
    """The domain of ``text`` for this agent, or ``unclassified``."""
    order = _candidates(profile)
    scores = score_domains(text, order)
    best, best_score = UNCLASSIFIED, 0
    for d in order:  # first of equals wins: can_learn order is the agent's own priority
        if scores.get(d, 0) > best_score:
            best, best_score = d, scores[d]
    return best
