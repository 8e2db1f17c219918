#!/usr/bin/env bash
# Install alma-hooks into ./.venv and check the result with `alma-hooks doctor`.
#
#   ./install.sh          # the package and its runtime dependencies
#   ./install.sh --dev    # plus the test tools (pytest, coverage, hypothesis, azure SDKs)
#
# Needs only Python 3.10+ with the venv module. Idempotent: a second run with
# an unchanged pyproject.toml skips pip and finishes in about a second.
# PYTHON=/path/to/python3.x picks the interpreter; ALMA_HOME moves the data dir (~/.alma).
set -euo pipefail

here="${BASH_SOURCE[0]%/*}"; [ "$here" = "${BASH_SOURCE[0]}" ] && here=.
cd "$here"
ROOT="$(pwd -P)"
VENV="$ROOT/.venv"
EXTRAS=""

for arg in "$@"; do
  case "$arg" in
    --dev) EXTRAS="[dev]" ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (use --dev or --help)" >&2; exit 2 ;;
  esac
done

die() { echo "install.sh: error: $1" >&2; exit 1; }
say() { echo "install.sh: $1"; }
LOG="${TMPDIR:-/tmp}/alma-hooks-install.$$.log"
# pip and the build backend are chatty even with --quiet: keep their output in a log, show it on failure.
quietly() {
  if ! "$@" >"$LOG" 2>&1; then
    tail -n 25 "$LOG" >&2
    die "'$*' failed (full output: $LOG)"
  fi
  rm -f "$LOG"
}

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 \
  || die "$PY not found (fix: install Python 3.10+, e.g. apt-get install python3, or set PYTHON=/path/to/python3)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
  || die "Python $("$PY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo "?") ($PY) is too old; alma-hooks needs Python 3.10+ (fix: install python3.10 or newer and run PYTHON=python3.10 ./install.sh)"

# A venv whose interpreter no longer runs (Python upgraded or removed) is rebuilt.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  say "rebuilding $VENV (its Python no longer runs)"
  rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || die "$PY -m venv is not available (fix: apt-get install python3-venv, or the python3.X-venv package of your Python)"
  if ! err="$("$PY" -m venv "$VENV" 2>&1)"; then
    rm -rf "$VENV"
    die "$PY -m venv failed: $(echo "$err" | tail -n 1) (fix: apt-get install python3-venv)"
  fi
  quietly "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip
  say "created $VENV with $("$VENV/bin/python" -c 'import platform; print("Python", platform.python_version())')"
fi

# Reinstall only when pyproject.toml or the extras changed since the last successful install.
STAMP="$VENV/.alma-hooks-install"
HASH="$("$VENV/bin/python" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
# A "compat" editable install is a plain path entry: the default one imports a finder (and pathlib)
# at every interpreter start, ~15 ms of each hook's latency.
MODE="editable_mode=compat"
if [ -x "$VENV/bin/alma-hooks" ] && { [ "$HAVE" = "$HASH $EXTRAS $MODE" ] || [ "$HAVE" = "$HASH [dev] $MODE" ]; }; then
  say "alma-hooks already installed in $VENV"   # (a --dev install also satisfies a plain one)
else
  quietly "$VENV/bin/python" -m pip install --disable-pip-version-check -e ".$EXTRAS" --config-settings "$MODE"
  echo "$HASH $EXTRAS $MODE" > "$STAMP"
  say "installed alma-hooks${EXTRAS:+ with $EXTRAS extras} into $VENV"
fi

# The plugin's hooks/alma-hook looks for this interpreter when the plugin dir has no .venv.
ALMA_HOME="${ALMA_HOME:-$HOME/.alma}"
mkdir -p "$ALMA_HOME"
chmod 700 "$ALMA_HOME"
ln -sfn "$VENV/bin/python" "$ALMA_HOME/python"

"$VENV/bin/alma-hooks" doctor --quiet
say "done: $VENV/bin/alma-hooks --help"
