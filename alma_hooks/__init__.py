"""alma-hooks: a persistent learning memory for Claude Code agents."""

__version__ = "0.1.0"
