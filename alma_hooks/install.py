"""`alma-hooks install` / `uninstall`: hooks into Claude Code settings, agents, config, DB.

- The hooks are merged into ``.claude/settings.json`` (project) or
  ``~/.claude/settings.json`` (user), keeping every other setting and hook;
  the file is backed up first, and a second install changes nothing.
- Hook commands use the absolute path of this environment's Python with
  ``-I`` (isolated: no PYTHON* variables, no user site), so they work from any
  directory without an activated venv.
- The plugin (``claude plugin install``) and this command never both register
  the hooks: each detects the other (DESIGN §9).
- ``uninstall`` removes exactly what install added; when nothing else changed
  meanwhile, the settings file is restored byte for byte from the backup.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import CONFIG_RELPATH
from .errors import AlmaError

MARKER = "alma_hooks.entry"
BACKUP_SUFFIX = ".alma-hooks.bak"
ABSENT = b'{"__alma_hooks_absent__": true}\n'
PLUGIN_ROOT = Path(__file__).resolve().parent.parent
AGENTS_DIR = Path(__file__).resolve().parent / "agents"

#: event -> (matcher or None, timeout in seconds); the same table as hooks/hooks.json
HOOK_EVENTS: dict[str, tuple[str | None, int]] = {
    "SessionStart": (None, 10),
    "UserPromptSubmit": (None, 10),
    "PreToolUse": ("Agent|Task", 5),
    "SubagentStart": (None, 10),
    "PostToolUse": ("*", 5),
    "PostToolUseFailure": ("*", 5),
    "Stop": (None, 15),
    "SubagentStop": (None, 15),
    "SessionEnd": (None, 15),
}

CONFIG_TEMPLATE = """\
# alma-hooks configuration for this project (keys: see alma_hooks/defaults.yaml).
# Commit this file so the team shares scopes; memories live in ~/.alma, not here.
# project_id: github.com/your-org/your-repo   # default: the git remote "origin"
retrieval:
  budget_tokens: 1000   # injected memory per prompt, hard cap 2000
# agents:
#   helena:
#     can_learn: [testing_strategies, selector_patterns, ui_component_patterns, form_testing, accessibility_testing]
#     cannot_learn: [backend_logic, database_queries]
"""


class InstallError(AlmaError):
    """Installing into Claude Code settings is not possible as asked."""


@dataclass
class InstallReport:
    settings_path: Path
    changed: bool = False
    backup: Path | None = None
    agents: list[str] = field(default_factory=list)
    skipped_agents: list[str] = field(default_factory=list)
    config_written: bool = False
    notes: list[str] = field(default_factory=list)


def hook_command(python: str | None = None) -> str:
    """The command Claude Code runs for every event: this Python, isolated, the entry module."""
    py = python or sys.executable
    return f'"{py}" -I -c "from {MARKER} import main; main()"'


def settings_path(project_dir: Path, scope: str, home: Path | None = None) -> Path:
    if scope == "user":
        return (home or Path.home()) / ".claude" / "settings.json"
    if scope == "project":
        return project_dir / ".claude" / "settings.json"
    raise InstallError(f"unknown scope {scope!r}", "use --scope project or --scope user")


def _read_settings(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as e:
        raise InstallError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})",
                           "fix the file by hand, then run install again") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} does not hold a JSON object", "fix the file by hand")
    return data


def _is_ours(group: Any) -> bool:
    return isinstance(group, dict) and any(
        isinstance(h, dict) and MARKER in str(h.get("command", "")) for h in group.get("hooks") or [])


def merged_settings(settings: dict[str, Any], command: str) -> dict[str, Any]:
    """``settings`` with our hook groups added (or refreshed in place); everything else untouched."""
    out = json.loads(json.dumps(settings))
    hooks = out.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InstallError("'hooks' in the settings is not an object", "fix the settings file by hand")
    for event, (matcher, timeout) in HOOK_EVENTS.items():
        group: dict[str, Any] = {"hooks": [{"type": "command", "command": command, "timeout": timeout}]}
        if matcher is not None:
            group = {"matcher": matcher, **group}
        groups = hooks.setdefault(event, [])
        mine = [i for i, g in enumerate(groups) if _is_ours(g)]
        if mine:
            groups[mine[0]] = group
            for i in reversed(mine[1:]):
                del groups[i]
        else:
            groups.append(group)
    return out


def without_ours(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every hook group of alma-hooks removed (empty containers dropped)."""
    out = json.loads(json.dumps(settings))
    hooks = out.get("hooks")
    if isinstance(hooks, dict):
        for event in list(hooks):
            groups = [g for g in hooks[event] if not _is_ours(g)] if isinstance(hooks[event], list) else hooks[event]
            if groups:
                hooks[event] = groups
            else:
                del hooks[event]
        if not hooks:
            del out["hooks"]
    return out


def plugin_enabled(project_dir: Path, home: Path | None = None) -> bool:
    """True when the alma-hooks Claude Code plugin is enabled for this project or user."""
    for path in (settings_path(project_dir, "project"), project_dir / ".claude" / "settings.local.json",
                 settings_path(project_dir, "user", home)):
        try:
            enabled = json.loads(path.read_text(encoding="utf-8")).get("enabledPlugins") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if any(k.split("@", 1)[0] == "alma-hooks" and v for k, v in enabled.items()):
            return True
    return False


def settings_registered(project_dir: Path, home: Path | None = None) -> bool:
    """True when settings (project or user) already run alma-hooks' hooks."""
    for path in (settings_path(project_dir, "project"), settings_path(project_dir, "user", home)):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if MARKER in text:
            return True
    return False


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def install(project_dir: Path, scope: str = "project", *, home: Path | None = None,
            python: str | None = None) -> InstallReport:
    """Register the hooks, install Helena and Victor, write the config if missing."""
    project_dir = project_dir.resolve()
    if plugin_enabled(project_dir, home):
        raise InstallError("the alma-hooks plugin is already enabled, and its hooks already run",
                           "keep the plugin and skip install, or `claude plugin uninstall alma-hooks` first")
    path = settings_path(project_dir, scope, home)
    report = InstallReport(settings_path=path)
    current = _read_settings(path)
    merged = merged_settings(current, hook_command(python))
    if merged != current:
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if not backup.exists():
            backup.parent.mkdir(parents=True, exist_ok=True)
            backup.write_bytes(path.read_bytes() if path.exists() else ABSENT)
        report.backup = backup
        _write_json(path, merged)
        report.changed = True
    agents_dir = path.parent / "agents"
    for src in sorted(AGENTS_DIR.glob("*.md")):
        dst = agents_dir / src.name
        if dst.exists() and dst.read_bytes() != src.read_bytes():
            report.skipped_agents.append(src.stem)
            report.notes.append(f"kept your own {dst} (differs from alma-hooks' {src.stem})")
            continue
        if not dst.exists():
            agents_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        report.agents.append(src.stem)
    config = project_dir / CONFIG_RELPATH
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
        report.config_written = True
    return report


def uninstall(project_dir: Path, scope: str = "project", *, home: Path | None = None) -> InstallReport:
    """Remove what install added; restore the backup exactly when nothing else changed."""
    project_dir = project_dir.resolve()
    path = settings_path(project_dir, scope, home)
    report = InstallReport(settings_path=path)
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    current = _read_settings(path)
    cleaned = without_ours(current)
    if backup.exists():
        original = backup.read_bytes()
        before = {} if original == ABSENT else json.loads(original or b"{}")
        if cleaned == before:  # nothing but our hooks changed: put the old file back byte for byte
            if original == ABSENT:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(original)
            backup.unlink()
            report.changed = True
            report.backup = backup
    if not report.changed and cleaned != current:
        _write_json(path, cleaned)
        report.changed = True
    agents_dir = path.parent / "agents"
    for src in sorted(AGENTS_DIR.glob("*.md")):
        dst = agents_dir / src.name
        if dst.exists() and dst.read_bytes() == src.read_bytes():
            dst.unlink()
            report.agents.append(src.stem)
    return report
