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
