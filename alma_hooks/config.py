"""Configuration: load, validate and resolve; project and user identity.

Precedence: a project's ``.alma/config.yaml`` over the packaged ``defaults.yaml``;
keys the defaults leave null are filled from ``ALMA_*`` environment variables,
then derived (project from git, user from git config or the OS login).

Hooks must not import yaml (~25 ms), so the merged file configuration is cached
as JSON under the data dir, keyed by the source files' mtimes; only a changed
config file costs a yaml import.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULTS_PATH = PACKAGE_DIR / "defaults.yaml"
CONFIG_RELPATH = Path(".alma") / "config.yaml"
KEYVAULT_PREFIX = "keyvault://"
AGENT_KEYS = {"can_learn": list, "cannot_learn": list, "min_occurrences_for_heuristic": int}
#: config keys that may hold a credential, and so must be Key Vault references
SECRET_KEYS = {("azure", "cosmos_key")}


def data_dir(env: dict[str, str] | None = None) -> Path:
    """The per-user data dir (DB, logs, spool, engine socket): ALMA_HOME or ~/.alma."""
    env = os.environ if env is None else env
    return Path(env.get("ALMA_HOME") or Path.home() / ".alma")


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by the user only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def settings_from(cls: Any, mapping: dict[str, Any] | None) -> Any:
    """A settings dataclass from a config mapping: its known keys only, each coerced to its default's type."""
    mapping = mapping or {}
    fields = cls.__dataclass_fields__
    return cls(**{k: type(fields[k].default)(v) for k, v in mapping.items() if k in fields})


@dataclass(frozen=True)
class AgentProfile:
    """What one agent may learn; an empty ``can_learn`` allows any domain not refused."""

    name: str
    can_learn: tuple[str, ...] = ()
    cannot_learn: tuple[str, ...] = ()
    min_occurrences_for_heuristic: int = 3

    def check_domain(self, domain: str) -> str | None:
        """Why a write in ``domain`` is refused, or None when it is allowed."""
        if not domain:
            return None
        if domain in self.cannot_learn:
            return f"agent '{self.name}' cannot learn domain '{domain}'"
        if self.can_learn and domain not in self.can_learn:
            return f"domain '{domain}' is not in the can_learn list of agent '{self.name}'"
        return None


@dataclass(frozen=True)
class ScopePolicy:
    """Agent profiles by name; unlisted agents use ``default`` (None: they learn nothing)."""

    agents: dict[str, AgentProfile] = field(default_factory=dict)
    default: AgentProfile | None = None

    def profile(self, agent: str) -> AgentProfile | None:
        prof = self.agents.get(agent)
        if prof is None and self.default is not None:
            return AgentProfile(agent, self.default.can_learn, self.default.cannot_learn,
                                self.default.min_occurrences_for_heuristic)
        return prof

    def check_write(self, agent: str, domain: str) -> str | None:
        """Why ``agent`` may not write a memory in ``domain``, or None when it may."""
        if agent == "*":
            return None
        prof = self.profile(agent)
        if prof is None:
            return f"agent '{agent}' is not configured to learn (agents.default is null)"
        return prof.check_domain(domain)

    @classmethod
    def permissive(cls) -> ScopePolicy:
        """Every agent may learn every domain: a store opened without configuration."""
        return cls({}, AgentProfile("default"))

    @classmethod
    def from_agents(cls, agents: dict[str, Any], min_occ: int = 3) -> ScopePolicy:
        profiles: dict[str, AgentProfile] = {}
        default = None
        for name, spec in agents.items():
            prof = None if spec is None else AgentProfile(
                name, tuple(spec.get("can_learn") or ()), tuple(spec.get("cannot_learn") or ()),
                int(spec.get("min_occurrences_for_heuristic") or min_occ))
            if name == "default":
                default = prof
            elif prof is not None:
                profiles[name] = prof
        return cls(profiles, default)


@dataclass
class Config:
    """The resolved configuration of one project, as plain data."""

    values: dict[str, Any]
    project_root: Path
    project_id: str
    user_id: str
    db_path: Path
    source: str = "defaults"

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def policy(self) -> ScopePolicy:
        return ScopePolicy.from_agents(self.values.get("agents") or {},
                                       int(self.get("learning.min_occurrences_for_heuristic", 3)))

    @property
    def budget_tokens(self) -> int:
        return max(0, min(2000, int(self.get("retrieval.budget_tokens", 1000))))


# ---------------------------------------------------------------- identity

def find_project_root(cwd: Path) -> tuple[Path, Path | None]:
    """The main repository root for ``cwd`` and its git dir (worktrees map to the main repo).

    Without a git repository the root is ``cwd`` itself and the git dir None.
    """
    cwd = cwd.resolve()
    for d in (cwd, *cwd.parents):
        git = d / ".git"
        if git.is_dir():
            return d, git
        if git.is_file():
            try:
                line = git.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                break
            if line.startswith("gitdir:"):
                gitdir = (d / line[7:].strip()).resolve()
                common = gitdir / "commondir"
                if common.is_file():
                    main_git = (gitdir / common.read_text().strip()).resolve()
                    return main_git.parent, main_git
                return d, gitdir
    return cwd, None


def _git_config_value(path: Path, section: str, key: str) -> str | None:
    """Read ``key`` of ``[section]`` from a git config file without running git."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    current = None
    for raw in lines:
        line = raw.strip()
        if line.startswith("["):
            current = line.strip("[]").replace('"', "").strip()
        elif current == section and "=" in line:
            k, v = line.split("=", 1)
            if k.strip().lower() == key.lower():
                return v.strip()
    return None


def normalise_remote(url: str) -> str:
    """'git@github.com:org/repo.git' and 'https://u@github.com/org/repo' -> 'github.com/org/repo'."""
    url = url.strip()
    if "://" in url:
        url = url.split("://", 1)[1]
        url = url.split("@", 1)[-1] if "@" in url.split("/", 1)[0] else url
    elif "@" in url and ":" in url:
        url = url.split("@", 1)[1].replace(":", "/", 1)
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url.lower()


def derive_project_id(root: Path, git_dir: Path | None) -> str:
    if git_dir is not None:
        remote = _git_config_value(git_dir / "config", "remote origin", "url")
        if remote:
            return normalise_remote(remote)
    return str(root)


def derive_user_id(env: dict[str, str], git_dir: Path | None) -> str:
    if env.get("ALMA_USER_ID"):
        return env["ALMA_USER_ID"]
    candidates = [git_dir / "config"] if git_dir else []
    home = Path(env.get("HOME") or Path.home())
    candidates += [home / ".gitconfig", home / ".config" / "git" / "config"]
    for path in candidates:
        email = _git_config_value(path, "user", "email")
        if email:
            return email.lower()
    for var in ("USER", "LOGNAME", "USERNAME"):
        if env.get(var):
            return env[var]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - platform without pwd
        return "unknown"


# ---------------------------------------------------------------- loading

def _read_yaml(path: Path) -> Any:
    import yaml  # only here: hooks normally hit the JSON cache

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML", "fix the syntax or delete the file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "save it as UTF-8") from None


def _type_name(v: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "a mapping"}.get(type(v), type(v).__name__)


def _merge(base: dict[str, Any], over: dict[str, Any], path: str, src: Path) -> dict[str, Any]:
    """Validate ``over`` against the shape of ``base`` and merge it in."""
    if not isinstance(over, dict):
        raise ConfigError(f"{src}: '{path or 'top level'}' must be a mapping", "see alma_hooks/defaults.yaml")
    out = dict(base)
    for key, val in over.items():
        dotted = f"{path}.{key}" if path else str(key)
        if path == "agents":
            out[key] = _agent_profile(val, dotted, src)
            continue
        if key not in base:
            raise ConfigError(f"{src}: unknown key '{dotted}'",
                              "remove it or check the spelling against alma_hooks/defaults.yaml")
        ref = base[key]
        if isinstance(ref, dict):
            out[key] = _merge(ref or {}, val if val is not None else {}, dotted, src)
        elif ref is None or val is None:
            out[key] = val
        elif isinstance(ref, bool) != isinstance(val, bool) or not isinstance(val, type(ref)) and not (
                isinstance(ref, float) and isinstance(val, int)):
            raise ConfigError(f"{src}: '{dotted}' must be {_type_name(ref)}, got {val!r}",
                              f"set it like the default: {dotted}: {json.dumps(ref)}")
        else:
            out[key] = val
    return out


def _agent_profile(val: Any, dotted: str, src: Path) -> dict[str, Any] | None:
    if val is None:
        return None
    if not isinstance(val, dict):
        raise ConfigError(f"{src}: '{dotted}' must be a mapping with can_learn/cannot_learn",
                          f"e.g. {dotted}: {{can_learn: [testing_strategies]}}")
    for k, v in val.items():
        if k not in AGENT_KEYS:
            raise ConfigError(f"{src}: unknown key '{dotted}.{k}'",
                              f"allowed: {', '.join(AGENT_KEYS)}")
        want = AGENT_KEYS[k]
        if not isinstance(v, want) or isinstance(v, bool) or (want is list and not all(isinstance(x, str) for x in v)):
            raise ConfigError(f"{src}: '{dotted}.{k}' must be {'a list of domain names' if want is list else 'a number'}",
                              f"e.g. {dotted}.{k}: {'[testing_strategies]' if want is list else 3}")
    return val


def check_no_plaintext_secrets(values: dict[str, Any], src: Path) -> None:
    """Refuse credentials in config: only ``keyvault://vault/secret`` references are allowed."""
    from .redact import contains_secret

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str) and not node.startswith(KEYVAULT_PREFIX):
            secret_key = tuple(path.split(".")) in SECRET_KEYS
            if secret_key or "AccountKey=" in node or contains_secret(node):
                from .errors import SecretInConfig

                raise SecretInConfig(f"{src}: '{path}' holds a plaintext secret",
                                     "store it in Azure Key Vault and write keyvault://<vault>/<secret-name> instead")

    walk(values, "")


def _file_config(root: Path, cache_dir: Path | None) -> tuple[dict[str, Any], str]:
    """Defaults merged with the project's config file, through the JSON cache."""
    project_cfg = root / CONFIG_RELPATH
    sources = [DEFAULTS_PATH, project_cfg]
    stamp = [s.stat().st_mtime_ns if s.exists() else 0 for s in sources]
    cache = None
    if cache_dir is not None:
        import hashlib

        cache = cache_dir / f"config-{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"
        try:
            cached = json.loads(cache.read_text())
            if cached["stamp"] == stamp and cached["root"] == str(root):
                return cached["values"], cached["source"]
        except (OSError, ValueError, KeyError):
            pass
    values = _read_yaml(DEFAULTS_PATH)
    source = "defaults"
    if project_cfg.exists():
        values = _merge(values, _read_yaml(project_cfg), "", project_cfg)
        check_no_plaintext_secrets(values, project_cfg)
        source = str(project_cfg)
    if values.get("storage") not in ("local", "azure"):
        raise ConfigError(f"{source}: 'storage' must be local or azure, got {values.get('storage')!r}",
                          "set storage: local")
    if cache is not None:
        try:
            ensure_private_dir(cache.parent)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"stamp": stamp, "root": str(root), "values": values, "source": source}, f)
            os.replace(tmp, cache)
        except OSError:
            pass
    return values, source


def load_config(cwd: Path | str | None = None, env: dict[str, str] | None = None) -> Config:
    """Resolve the configuration for the project containing ``cwd``."""
    env = dict(os.environ) if env is None else env
    root, git_dir = find_project_root(Path(cwd or os.getcwd()))
    home = data_dir(env)
    values, source = _file_config(root, home / "cache")
    project_id = values.get("project_id") or env.get("ALMA_PROJECT_ID") or derive_project_id(root, git_dir)
    user_id = values.get("user_id") or derive_user_id(env, git_dir)
    db = values.get("db_path") or env.get("ALMA_DB")
    db_path = Path(db).expanduser() if db else home / "memory.db"
    if not db_path.is_absolute():
        db_path = root / db_path
    if env.get("ALMA_DISABLED") in ("1", "true", "yes"):
        values = {**values, "enabled": False}
    return Config(values=values, project_root=root, project_id=str(project_id), user_id=str(user_id),
                  db_path=db_path, source=source)
