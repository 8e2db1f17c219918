"""Configuration: validation errors that name file and key, secrets refused, identity, the JSON cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from alma_hooks import config as config_module
from alma_hooks.config import find_project_root, load_config, normalise_remote
from alma_hooks.errors import ConfigError, SecretInConfig

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    git("init", "-q", cwd=root)
    git("remote", "add", "origin", "git@github.com:Org/Repo.git", cwd=root)
    return root


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: own data dir and HOME, so the machine's git config is not read."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"ALMA_HOME": str(tmp_path / "alma-home"), "HOME": str(home), "USER": "login-name", **extra}


def write_config(root: Path, text: str) -> Path:
    path = root / ".alma" / "config.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- validation

def test_defaults_without_a_config_file(repo, tmp_path):
    cfg = load_config(repo, env_for(tmp_path))
    assert cfg.source == "defaults"
    assert cfg.get("storage") == "local" and cfg.budget_tokens == 1000
    assert cfg.db_path == tmp_path / "alma-home" / "memory.db"
    assert set(cfg.policy.agents) >= {"main", "helena", "victor"}


def test_project_file_overrides_defaults(repo, tmp_path):
    write_config(repo, "retrieval:\n  budget_tokens: 600\n  weights:\n    similarity: 0.7\n")
    cfg = load_config(repo, env_for(tmp_path))
    assert cfg.budget_tokens == 600 and cfg.get("retrieval.weights.similarity") == 0.7
    assert cfg.get("retrieval.weights.recency") == 0.15  # siblings keep their defaults
    assert cfg.source.endswith("config.yaml")


BAD_CONFIGS = {
    "unknown-top-key": ("colour: blue\n", "unknown key 'colour'"),
    "unknown-nested-key": ("retrieval:\n  budget_tokenz: 10\n", "unknown key 'retrieval.budget_tokenz'"),
    "text-for-number": ("retrieval:\n  k: eight\n", "'retrieval.k' must be a number"),
    "number-for-bool": ("enabled: 1\n", "'enabled' must be true/false"),
    "list-for-mapping": ("retrieval: [1, 2]\n", "'retrieval' must be a mapping"),
    "bad-storage": ("storage: cloud\n", "'storage' must be local or azure"),
    "not-yaml": ("retrieval: [unclosed\n", "is not valid YAML"),
    "agent-not-mapping": ("agents:\n  helena: everything\n", "'agents.helena' must be a mapping"),
    "agent-unknown-key": ("agents:\n  helena:\n    can_lern: [x]\n", "unknown key 'agents.helena.can_lern'"),
    "agent-domains-not-list": ("agents:\n  helena:\n    can_learn: testing\n",
                               "'agents.helena.can_learn' must be a list of domain names"),
    "agent-min-occ-text": ("agents:\n  victor:\n    min_occurrences_for_heuristic: many\n",
                           "'agents.victor.min_occurrences_for_heuristic' must be a number"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS), ids=list(BAD_CONFIGS))
def test_invalid_config_names_file_key_and_fix(repo, tmp_path, case):
    text, message = BAD_CONFIGS[case]
    path = write_config(repo, text)
    with pytest.raises(ConfigError) as err:
        load_config(repo, env_for(tmp_path))
    assert message in err.value.message
    if case != "bad-storage":  # storage is checked after the merge, against the merged source
        assert str(path) in err.value.message
    assert err.value.fix


def test_agent_profiles(repo, tmp_path):
    write_config(repo, "agents:\n  zed:\n    can_learn: [debugging]\n    min_occurrences_for_heuristic: 5\n"
                       "  helena:\n    cannot_learn: [backend_logic, payments]\n")
    policy = load_config(repo, env_for(tmp_path)).policy
    assert policy.profile("zed").min_occurrences_for_heuristic == 5
    assert policy.check_write("zed", "debugging") is None
    assert "not in the can_learn list" in policy.check_write("zed", "tooling")
    assert "cannot learn domain 'payments'" in policy.check_write("helena", "payments")
    assert policy.check_write("stranger", "debugging") is None  # the default profile
    assert policy.check_write("stranger", "payments") is not None


def test_default_null_makes_unlisted_agents_learn_nothing(repo, tmp_path):
    write_config(repo, "agents:\n  default: null\n")
    policy = load_config(repo, env_for(tmp_path)).policy
    assert "agents.default is null" in policy.check_write("stranger", "debugging")
    assert policy.check_write("helena", "form_testing") is None


# ---------------------------------------------------------------- secrets

def test_plaintext_cosmos_key_is_refused(repo, tmp_path):
    write_config(repo, 'azure:\n  cosmos_key: "abc123DEF456ghi789JKL012mno345PQR678stu901VWX=="\n')
    with pytest.raises(SecretInConfig) as err:
        load_config(repo, env_for(tmp_path))
    assert "'azure.cosmos_key' holds a plaintext secret" in err.value.message
    assert "keyvault://" in err.value.fix
    assert "abc123" not in err.value.one_line()  # the secret itself is never echoed


def test_short_plaintext_cosmos_key_is_refused_too(repo, tmp_path):
    write_config(repo, "azure:\n  cosmos_key: abc\n")
    with pytest.raises(SecretInConfig):
        load_config(repo, env_for(tmp_path))


def test_connection_string_anywhere_is_refused(repo, tmp_path):
    write_config(repo, "azure:\n  cosmos_endpoint: 'AccountEndpoint=https://x/;AccountKey=c2VjcmV0c2VjcmV0;'\n")
    with pytest.raises(SecretInConfig):
        load_config(repo, env_for(tmp_path))


def test_keyvault_reference_is_accepted(repo, tmp_path):
    write_config(repo, "storage: azure\nazure:\n  cosmos_endpoint: https://acct.documents.azure.com:443/\n"
                       "  cosmos_key: keyvault://team-vault/cosmos-key\n")
    cfg = load_config(repo, env_for(tmp_path))
    assert cfg.get("azure.cosmos_key") == "keyvault://team-vault/cosmos-key"
    assert cfg.get("storage") == "azure"


# ---------------------------------------------------------------- identity

@pytest.mark.parametrize("url", ["git@github.com:Org/Repo.git", "https://github.com/org/repo",
                                 "https://user@github.com/Org/Repo.git/", "ssh://git@github.com/org/repo.git"],
                         ids=["scp", "https", "https-user", "ssh"])
def test_remote_urls_normalise_to_one_project_id(url):
    assert normalise_remote(url) == "github.com/org/repo"


def test_project_id_from_git_remote(repo, tmp_path):
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    cfg = load_config(sub, env_for(tmp_path))
    assert cfg.project_id == "github.com/org/repo" and cfg.project_root == repo.resolve()


def test_project_without_remote_or_git_is_its_path(tmp_path):
    plain = tmp_path / "scratch"
    plain.mkdir()
    assert load_config(plain, env_for(tmp_path)).project_id == str(plain.resolve())
    bare = tmp_path / "local-only"
    bare.mkdir()
    git("init", "-q", cwd=bare)
    assert load_config(bare / ".", env_for(tmp_path)).project_id == str(bare.resolve())


def test_worktree_maps_to_the_main_repository(repo, tmp_path):
    (repo / "README").write_text("x\n")
    git("add", "README", cwd=repo)
    git("commit", "-q", "-m", "init", cwd=repo)
    wt = tmp_path / "shop-feature"
    git("worktree", "add", "-q", "-b", "feature", str(wt), cwd=repo)
    assert (wt / ".git").is_file()
    root, git_dir = find_project_root(wt)
    assert root == repo.resolve() and git_dir == (repo / ".git").resolve()
    write_config(repo, "retrieval:\n  budget_tokens: 700\n")  # the main repo's config applies
    cfg = load_config(wt, env_for(tmp_path))
    assert cfg.project_id == "github.com/org/repo" and cfg.budget_tokens == 700


def test_project_id_overrides(repo, tmp_path):
    assert load_config(repo, env_for(tmp_path, ALMA_PROJECT_ID="acme/one")).project_id == "acme/one"
    write_config(repo, "project_id: acme/from-file\n")
    assert load_config(repo, env_for(tmp_path, ALMA_PROJECT_ID="acme/one")).project_id == "acme/from-file"


def test_user_id_precedence(repo, tmp_path):
    env = env_for(tmp_path)
    assert load_config(repo, env).user_id == "login-name"  # nothing else known: the OS login
    (tmp_path / "home" / ".gitconfig").write_text("[user]\n\tname = T\n\temail = Global@Example.com\n")
    assert load_config(repo, env).user_id == "global@example.com"
    git("config", "user.email", "repo@example.com", cwd=repo)
    assert load_config(repo, env).user_id == "repo@example.com"
    assert load_config(repo, {**env, "ALMA_USER_ID": "alma@example.com"}).user_id == "alma@example.com"
    write_config(repo, "user_id: file@example.com\n")
    assert load_config(repo, {**env, "ALMA_USER_ID": "alma@example.com"}).user_id == "file@example.com"


def test_db_path_overrides(repo, tmp_path):
    assert load_config(repo, env_for(tmp_path, ALMA_DB=str(tmp_path / "x.db"))).db_path == tmp_path / "x.db"
    write_config(repo, "db_path: .alma/memory.db\n")
    assert load_config(repo, env_for(tmp_path)).db_path == repo.resolve() / ".alma" / "memory.db"


def test_alma_disabled(repo, tmp_path):
    assert load_config(repo, env_for(tmp_path, ALMA_DISABLED="1")).get("enabled") is False
    assert load_config(repo, env_for(tmp_path)).get("enabled") is True


# ---------------------------------------------------------------- JSON cache

def test_json_cache_used_second_time_and_invalidated_on_change(repo, tmp_path, monkeypatch):
    path = write_config(repo, "retrieval:\n  budget_tokens: 500\n")
    env = env_for(tmp_path)
    reads: list[Path] = []
    real = config_module._read_yaml

    def counting(p: Path):
        reads.append(p)
        return real(p)

    monkeypatch.setattr(config_module, "_read_yaml", counting)
    assert load_config(repo, env).budget_tokens == 500
    assert len(reads) == 2  # defaults and the project file
    (cache,) = (tmp_path / "alma-home" / "cache").glob("config-*.json")

    reads.clear()
    assert load_config(repo, env).budget_tokens == 500
    assert reads == []  # served from the JSON cache: no YAML parsed

    path.write_text("retrieval:\n  budget_tokens: 400\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert load_config(repo, env).budget_tokens == 400
    assert path in reads

    reads.clear()
    path.unlink()
    assert load_config(repo, env).budget_tokens == 1000  # a removed file invalidates too
    assert reads == [config_module.DEFAULTS_PATH]
    assert cache.exists()


def test_a_broken_cache_file_is_ignored(repo, tmp_path):
    env = env_for(tmp_path)
    load_config(repo, env)
    (cache,) = (tmp_path / "alma-home" / "cache").glob("config-*.json")
    cache.write_text("{not json")
    assert load_config(repo, env).budget_tokens == 1000


def test_invalid_config_is_not_cached(repo, tmp_path):
    path = write_config(repo, "colour: blue\n")
    env = env_for(tmp_path)
    for _ in range(2):
        with pytest.raises(ConfigError):
            load_config(repo, env)
    path.write_text("retrieval:\n  budget_tokens: 300\n")
    assert load_config(repo, env).budget_tokens == 300
