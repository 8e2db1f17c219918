# Fixtures for end-to-end runs of the real Claude Code CLI (claude_bin, run_claude, ...).
pytest_plugins = ["claude_fixtures"]


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def embedder():
    """The real ONNX embedder, verified and loaded once for the whole session."""
    from alma_hooks.embedding import OnnxMiniLM

    model = OnnxMiniLM()
    model.load()
    return model


@pytest.fixture(autouse=True)
def alma_home(tmp_path, monkeypatch):
    """Every test gets its own data dir (DB, config cache, logs, engine socket) under ``tmp_path``.

    Identity overrides of the machine running the tests are cleared, and hooks
    never start a warm engine on their own.
    """
    home = tmp_path / "alma-home"
    monkeypatch.setenv("ALMA_HOME", str(home))
    monkeypatch.setenv("ALMA_ENGINE_AUTOSTART", "0")
    for var in ("ALMA_USER_ID", "ALMA_PROJECT_ID", "ALMA_DB", "ALMA_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    return home
