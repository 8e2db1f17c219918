"""Fuzzing: hook stdin through the real entry point, and the CLI's arguments (issue 7, item 4).

The hook fuzz calls ``alma_hooks.entry.main()`` in this process for speed (stdin and
stdout swapped for byte buffers); a few of the nastiest inputs then go through the real
``hooks/alma-hook`` subprocess too. Whatever arrives: exit 0, stdout empty or a hook
reply, and a secret in the input never reaches a file of the data dir.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from figures import full_run, record
from hooktools import EVENTS, USER_ID, assert_fail_open, make_payload, query
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alma_hooks import entry
from alma_hooks.cli import main as cli

pytestmark = pytest.mark.fault

AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
FIELDS = ("hook_event_name", "session_id", "cwd", "prompt", "tool_name", "tool_input", "tool_response",
          "error", "agent_type", "tool_use_id", "duration_ms")
#: The events that store something: drawn more often, to exercise the store and the redactor.
CAPTURING = ("UserPromptSubmit", "PostToolUse", "PostToolUseFailure")
EDGE_TEXT = ("\ud800", "\udfff", "\ud83d\ude00", "\u202eevil\u202c", "\u05e9\u05dc\u05d5\u05dd", "\x00",
             "\ufeff", "e\u0301", "\u200b\u200d", "\ufffd", "\\u0000", '"}{', "]]]", "\n\r\t")
#: More cases in the fault runner's full run (bench/reliability.py) than in the default suite.
HOOK_CASES, CLI_CASES = (1000, 500) if full_run() else (150, 100)
FUZZ = settings(max_examples=HOOK_CASES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


# ---------------------------------------------------------------- strategies

def _huge(pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Strings up to ~200 KB, built by repetition (hypothesis cannot draw that many characters)."""
    return st.builds(lambda s, n: (s or "x") * (n // max(1, len(s or "x"))), pieces, st.integers(1, 200_000))


text = st.one_of(st.text(max_size=60), st.sampled_from(EDGE_TEXT),
                 st.lists(st.sampled_from(EDGE_TEXT) | st.text(max_size=8), max_size=8).map("".join))
secretish = st.one_of(text, st.builds(lambda a, b: f"{a} export AWS_ACCESS_KEY_ID={AWS_KEY} {b}", text, text))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), text, _huge(text))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.sampled_from(FIELDS + ("command", "stdout", "file_path"))
                                             | st.text(max_size=10), inner, max_size=4), max_leaves=12)


@st.composite
def payloads(draw: st.DrawFn, project: Path) -> dict[str, Any]:
    """A hook payload: real field names with right or wrong values, sometimes a secret in the text."""
    body: dict[str, Any] = {}
    event = draw(st.sampled_from(EVENTS) | json_values)
    if draw(st.booleans()) or event is not None:
        body["hook_event_name"] = event
    right = {
        "session_id": st.text(min_size=1, max_size=20) | json_values,
        "cwd": st.sampled_from([str(project), str(project / "README.md"), str(project.parent / "gone"),
                                "relative/dir", "", "/dev/null", str(project) + "\x00x"]) | json_values,
        "prompt": secretish | _huge(secretish) | json_values,
        "tool_name": st.sampled_from(["Bash", "Read", "Edit", "Write", "Task", "mcp__x__y", ""]) | json_values,
        "tool_input": st.fixed_dictionaries({"command": secretish}, optional={"file_path": text}) | json_values,
        "tool_response": st.fixed_dictionaries({"stdout": secretish | _huge(secretish)},
                                               optional={"stderr": text, "interrupted": st.booleans()})
        | json_values,
        "error": secretish | json_values,
        "agent_type": st.sampled_from(["helena", "victor", "general-purpose", "../../etc"]) | json_values,
        "tool_use_id": text | json_values,
        "duration_ms": st.integers() | st.floats() | json_values,
    }
    for name in draw(st.lists(st.sampled_from(FIELDS[1:]), unique=True)):
        body[name] = draw(right[name])
    if draw(st.booleans()):  # half the time a well-formed core, so the fuzz reaches the handlers and the store
        body.update(hook_event_name=draw(st.sampled_from(EVENTS + CAPTURING * 2)), session_id=draw(st.text(min_size=1, max_size=20)),
                    cwd=str(project))
        body.setdefault("prompt", draw(secretish))
    body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)))
    return body


@st.composite
def stdin_bytes(draw: st.DrawFn, project: Path) -> bytes:
    """Bytes on a hook's stdin: mostly JSON objects, encoded in several ways and sometimes mangled."""
    kind = draw(st.sampled_from(["object", "object", "object", "truncated", "binary", "other-json", "deep"]))
    if kind == "binary":
        return draw(st.binary(max_size=4096))
    if kind == "other-json":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.integers(10, 200_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * draw(st.integers(0, depth))).encode()
    body = draw(payloads(project))
    ascii_only = draw(st.booleans())
    # ensure_ascii=True writes lone surrogates as \\udXXX escapes; False writes them raw (invalid UTF-8)
    raw = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if kind == "truncated":
        raw = raw[:draw(st.integers(0, max(0, len(raw) - 1)))]
    return raw


# ---------------------------------------------------------------- the in-process hook

def _reset_hook_logging() -> None:
    """Forget the log handler of an earlier data dir (logs.to_file installs one per process)."""
    root = logging.getLogger("alma_hooks")
    for h in [h for h in root.handlers if getattr(h, "alma_hooks_log", False)]:
        root.removeHandler(h)
        inner = getattr(h, "inner", None)
        if inner is not None:
            inner.close()


@pytest.fixture
def hook_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``call(stdin_bytes, home) -> (exit, stdout bytes)``: entry.main() as a hook process would run it."""
    for k in list(os.environ):
        if k.startswith(("ALMA_", "CLAUDE")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("ALMA_ENGINE_AUTOSTART", "0")
    monkeypatch.setenv("ALMA_USER_ID", USER_ID)
    monkeypatch.chdir(tmp_path)  # a relative or empty `cwd` in the payload resolves here, not in the repo

    def call(raw: bytes, home: Path) -> tuple[int, bytes]:
        monkeypatch.setenv("ALMA_HOME", str(home))
        _reset_hook_logging()
        out = types.SimpleNamespace(buffer=io.BytesIO())
        saved = sys.stdin, sys.stdout
        sys.stdin, sys.stdout = types.SimpleNamespace(buffer=io.BytesIO(raw)), out  # type: ignore[assignment]
        try:
            code = entry.main()
        finally:  # restored at once: pytest and hypothesis print through sys.stdout
            sys.stdin, sys.stdout = saved
        return code, out.buffer.getvalue()

    yield call
    _reset_hook_logging()


def _assert_reply(stdout: bytes) -> None:
    if not stdout.strip():
        return
    out = json.loads(stdout.decode("utf-8"))
    assert isinstance(out, dict), out
    spec = out.get("hookSpecificOutput")
    if spec is not None:
        assert isinstance(spec, dict) and isinstance(spec.get("additionalContext"), str), out


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_hook_stdin_fuzz_fails_open_and_stores_no_secret(hook_process, project: Path, tmp_path: Path) -> None:
    homes = iter(range(10**9))
    tally = {"cases": 0, "exit0": 0}

    @FUZZ
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        raw = data.draw(stdin_bytes(project), label="stdin")
        home = tmp_path / f"home-{next(homes)}"
        home.mkdir(mode=0o700)
        code, stdout = hook_process(raw, home)
        tally["cases"] += 1
        tally["exit0"] += code == 0
        assert code == 0
        _assert_reply(stdout)
        leaked = _files_holding(home, AWS_KEY.encode()) + _files_holding(project, AWS_KEY.encode())
        assert not leaked, f"secret stored unredacted in {leaked}"

    check()
    record("fuzz", target="hook stdin", **tally)


@pytest.mark.parametrize("duration", [2**70, -(2**70), 1e308, "Infinity", "NaN"])
def test_absurd_duration_does_not_lose_the_capture(duration: Any, hook_process, project: Path, alma_home: Path,
                                                   config) -> None:  # type: ignore[no-untyped-def]
    """Found by the fuzz: a duration_ms past SQLite's 64-bit INTEGER raised OverflowError and dropped the event."""
    body = make_payload("PostToolUse", project, {"tool_name": "Bash", "tool_use_id": f"t-{duration}",
                                                 "tool_input": {"command": "make test"},
                                                 "tool_response": {"stdout": "ok"}, "duration_ms": 0})
    raw = json.dumps(body).replace('"duration_ms": 0', f'"duration_ms": {duration}').encode()
    code, stdout = hook_process(raw, alma_home)
    assert code == 0 and not stdout.strip()
    assert query(config.db_path, "SELECT duration_ms FROM events") == [(0,)]


# ---------------------------------------------------------------- the real subprocess

def _nasty(project: Path) -> dict[str, bytes]:
    big = "\u202e\x00\ud800" + f" {AWS_KEY} " + "y" * 2_000_000
    prompt = make_payload("UserPromptSubmit", project, {"prompt": big})
    post = make_payload("PostToolUse", project, {
        "tool_name": "Bash", "tool_use_id": {"not": "a string"}, "duration_ms": "NaN",
        "tool_input": {"command": f"aws configure set aws_access_key_id {AWS_KEY}"},
        "tool_response": [None, True, 1e308, {"stdout": "\udfff" * 5000}]})
    return {
        "surrogates-rtl-nul-secret-2mb-prompt": json.dumps(prompt).encode(),
        "wrong-types-everywhere-raw-surrogates": json.dumps(post, ensure_ascii=False).encode("utf-8", "surrogatepass"),
        "deep-nesting-truncated": b'{"hook_event_name": "Stop", "cwd": ' + json.dumps(str(project)).encode()
                                  + b', "x": ' + b"[" * 500_000,
    }


@pytest.mark.parametrize("case", ["surrogates-rtl-nul-secret-2mb-prompt", "wrong-types-everywhere-raw-surrogates",
                                  "deep-nesting-truncated"])
def test_nasty_inputs_through_the_real_hook(case: str, run_hook, project: Path, alma_home: Path) -> None:
    result = run_hook("UserPromptSubmit", raw=_nasty(project)[case])
    assert_fail_open(result)
    assert not _files_holding(alma_home, AWS_KEY.encode())
    assert not _files_holding(project, AWS_KEY.encode())


# ---------------------------------------------------------------- CLI arguments

COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("remember",): ["--type", "--agent", "--domain", "--project-dir", "--json"],
    ("search",): ["--agent", "--type", "--k", "--project-dir", "--json"],
    ("stats",): ["--agent", "--all", "--every", "--last", "--project-dir", "--json"],
    ("export",): ["-o", "--output", "--all", "--project-dir"],
    ("import",): ["--project-dir"],
    ("forget",): ["--reason", "--dry-run", "--agent", "--project-dir"],
    ("review",): ["--agent", "--limit", "--json", "--project-dir"],
    ("doctor",): ["--project-dir", "--json", "-q", "--quiet"],
    ("engine", "status"): ["--json"],
    ("engine", "stop"): [],
    ("sync", "status"): ["--project-dir", "--json"],
    ("sync", "enable"): ["--project-dir"],
    ("sync", "disable"): ["--project-dir"],
    ("install",): ["--scope", "--project-dir"],
    ("uninstall",): ["--scope", "--project-dir"],
    ("engine",): [],
    ("sync",): [],
    (): ["--version"],
}
COMMON = ["-h", "--help", "--", "--bogus", "-x", "--json=1", "--k=0"]


def _arg_values(project: Path, tmp: Path) -> st.SearchStrategy[str]:
    paths = [str(project), str(tmp / "nowhere"), str(project / "README.md"), str(tmp / "out.jsonl"), "/dev/null",
             "-", ".", "relative"]
    return st.one_of(st.sampled_from(paths), st.sampled_from(["project", "user", "knowledge", "preference", "helena",
                                                              "0", "-1", "99999999999999999999", "1e3", "nan", ""]),
                     st.text(max_size=30), st.sampled_from(EDGE_TEXT + ("bad \udcff bytes",)))
    # (bytes of argv that are not UTF-8 reach Python as lone surrogates \udc80-\udcff)


def _inside(path: str, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(root.resolve())
    except (ValueError, OSError):
        return False


FLAGS = {"--json", "--all", "--dry-run", "-q", "--quiet", "--version", "-h", "--help", "--"}
POSITIONAL = {"remember", "search", "import", "forget"}


@st.composite
def argvs(draw: st.DrawFn, project: Path, tmp: Path) -> list[str]:
    """A command, its options mostly with values, its argument; sometimes junk anywhere."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    values = _arg_values(project, tmp)
    tail: list[str] = []
    for opt in draw(st.lists(st.sampled_from(COMMANDS[command] or COMMON), max_size=3)):
        tail += [opt] if opt in FLAGS else [opt, draw(values)]
    if command and command[0] in POSITIONAL and draw(st.integers(0, 4)):
        tail.append(draw(values))
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 2)) == 0 else 0):
        tail.insert(draw(st.integers(0, len(tail))), draw(st.sampled_from(COMMON) | values))
    return [*command, *(a.replace("\x00", "") for a in tail)]  # an OS argv cannot hold NUL (C strings)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, project: Path) -> Path:
    for k in list(os.environ):
        if k.startswith(("ALMA_", "CLAUDE")):
            monkeypatch.delenv(k)
    home = tmp_path / "alma-cli"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("ALMA_HOME", str(home))
    monkeypatch.setenv("ALMA_ENGINE_AUTOSTART", "0")
    monkeypatch.setenv("ALMA_USER_ID", USER_ID)
    monkeypatch.chdir(project)
    return home


def test_cli_argument_fuzz_never_tracebacks(cli_env: Path, project: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    tally = {"cases": 0, "no_traceback": 0}

    @settings(max_examples=CLI_CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
    @given(argv=argvs(project, tmp_path))
    def check(argv: list[str]) -> None:
        argv = list(argv)
        for i, arg in enumerate(argv[:-1]):  # never let install/uninstall reach a directory outside tmp_path
            if arg == "--project-dir" and not _inside(argv[i + 1], tmp_path):
                argv[i + 1] = str(project)
        result = runner.invoke(cli, argv, catch_exceptions=True)
        tally["cases"] += 1
        tally["no_traceback"] += "Traceback" not in result.output and (
            result.exception is None or isinstance(result.exception, SystemExit))
        assert isinstance(result.exit_code, int)
        event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many runs got past parsing
        assert "Traceback" not in result.output, (argv, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            (argv, repr(result.exception), result.output)

    check()
    record("fuzz", target="CLI arguments", **tally)


@pytest.mark.parametrize("argv", [["remember", "bad \udcff"], ["search", "bad \udcff"], ["forget", "\udcff"],
                                  ["export", "-o", ""], ["install", "--project-dir", "/dev/null"]],
                         ids=["remember", "search", "forget", "export-empty-output", "project-dir-not-a-dir"])
def test_argv_found_by_the_fuzz_gives_no_traceback(argv: list[str], cli_env: Path) -> None:
    """`alma-hooks remember $'\\xff'` raised UnicodeEncodeError (search: a tokenizer TypeError); `export -o ''` ValueError."""
    result = CliRunner().invoke(cli, argv, catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
