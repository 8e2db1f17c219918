"""Key Vault references: the real ``SecretClient`` (azure-keyvault-secrets) against a loopback stand-in.

The stand-in (``keyvault_standin.KeyVaultStandIn``) answers the secrets API the way Key
Vault does (401 Bearer challenge first, then the secret, 403 or 404); the credential is a
static test token (``StaticCredential``), since there is no Entra ID here. TLS
verification is off for the stand-in's self-signed certificate, and the SDK's check that
the challenge's resource (vault.azure.net) matches the vault's host is off, since the
host is 127.0.0.1. Everything between (challenge policy, token request for the
``https://vault.azure.net/.default`` scope, retries, error mapping) is the SDK's.
"""

from __future__ import annotations

import logging
import pickle
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROJECT, resolver_for, write_config
from keyvault_standin import CLIENT_OPTIONS, StaticCredential

from alma_hooks.config import Config, load_config
from alma_hooks.doctor import FAIL, OK, check_azure, run_checks
from alma_hooks.errors import ConfigError, SecretInConfig, SecretUnavailable
from alma_hooks.sync import keyvault
from alma_hooks.sync.keyvault import KeyVaultResolver, Secret, parse_ref

pytestmark = pytest.mark.azure
REF = "keyvault://team-vault/cosmos-key"


def kv_config(tmp_path: Path, template: str, credential: str = "default") -> Config:
    return Config(values={"storage": "azure", "azure": {"cosmos_endpoint": "https://acct.documents.azure.com:443/",
                                                        "cosmos_key": REF, "keyvault_url_template": template,
                                                        "credential": credential}},
                  project_root=tmp_path, project_id=PROJECT, user_id="u", db_path=tmp_path / "m.db")


def test_a_reference_resolves_through_the_challenge_flow(tmp_path, keyvault, cosmos_key):
    credential = StaticCredential()
    resolver = KeyVaultResolver(kv_config(tmp_path, keyvault.url_template), credential=credential,
                                client_options=CLIENT_OPTIONS)
    secret = resolver.resolve(REF)
    assert secret.reveal() == cosmos_key
    assert [(r.status, r.authorized, r.vault) for r in keyvault.requests] == [(401, False, "team-vault"),
                                                                              (200, True, "team-vault")]
    assert credential.scopes == [("https://vault.azure.net/.default",)]
    assert resolver.resolve(REF) is secret and len(keyvault.requests) == 2, "cached in this process"


def test_a_secret_never_shows_itself(cosmos_key):
    secret = Secret(cosmos_key)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", str([secret]), str({"k": secret})):
        assert cosmos_key not in text and "***" in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)


@pytest.mark.parametrize("ref", ["keyvault://", "keyvault://v/", "keyvault://a/b", "keyvault://team-vault/a/b/c",
                                 "keyvault://team vault/key", "keyvault://team-vault/key_with_underscore",
                                 "https://team-vault.vault.azure.net/secrets/key"])
def test_malformed_references_are_config_errors(ref):
    with pytest.raises(ConfigError, match="keyvault://"):
        parse_ref(ref)


def test_references_with_a_version_and_url_templates():
    assert parse_ref("keyvault://team-vault/cosmos-key/0123abcd") == keyvault.SecretRef("team-vault", "cosmos-key",
                                                                                        "0123abcd")
    assert keyvault.vault_url("team-vault", env={}) == "https://team-vault.vault.azure.net"
    assert keyvault.vault_url("v1", env={keyvault.KEYVAULT_URL_ENV: "https://{vault}.vault.azure.cn/"}) == \
        "https://v1.vault.azure.cn"


@pytest.mark.parametrize("name,status,hint", [
    ("missing", 404, "az keyvault secret set --vault-name team-vault --name missing"),
    ("locked", 403, "Key Vault Secrets User"),
], ids=["404", "403"])
def test_failures_are_explained_with_a_fix(tmp_path, keyvault, name, status, hint):
    keyvault.forbidden.add("locked")
    resolver = resolver_for(kv_config(tmp_path, keyvault.url_template))
    with pytest.raises(SecretUnavailable) as err:
        resolver.resolve(f"keyvault://team-vault/{name}")
    assert str(status) in err.value.message and hint in err.value.fix


def test_a_refused_token_is_a_401_with_a_sign_in_hint(tmp_path, keyvault):
    resolver = KeyVaultResolver(kv_config(tmp_path, keyvault.url_template), credential=StaticCredential("stale"),
                                client_options=CLIENT_OPTIONS)
    with pytest.raises(SecretUnavailable) as err:
        resolver.resolve(REF)
    assert "401" in err.value.message and "az login" in err.value.fix


def test_an_unreachable_vault_fails_with_a_network_hint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    resolver = resolver_for(kv_config(tmp_path, f"https://127.0.0.1:{closed}/{{vault}}"))
    with pytest.raises(SecretUnavailable, match="cannot reach Key Vault") as err:
        resolver.resolve(REF)
    assert "firewall" in err.value.fix


def test_default_credential_skips_the_managed_identity_probe(monkeypatch):
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE",
                "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    from azure.identity import ManagedIdentityCredential

    chain = keyvault.make_credential("default")
    assert chain.credentials and not any(isinstance(c, ManagedIdentityCredential) for c in chain.credentials)
    assert isinstance(keyvault.make_credential("managed_identity"), ManagedIdentityCredential)
    with pytest.raises(ConfigError, match="azure.credential"):
        keyvault.make_credential("password")


def test_no_credential_at_all_fails_fast_with_a_hint(tmp_path, keyvault, monkeypatch):
    for var in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(var, raising=False)
    resolver = KeyVaultResolver(kv_config(tmp_path, keyvault.url_template, credential="environment"),
                                client_options=CLIENT_OPTIONS)
    with pytest.raises(SecretUnavailable, match="no Azure credential available") as err:
        resolver.resolve(REF)
    assert "az login" in err.value.fix


# ---------------------------------------------------------------- plaintext secrets in config

@pytest.mark.parametrize("yaml_line", [
    "  cosmos_key: C2y6yDjf5R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw==",
    "  cosmos_key: just-a-password",
    "  cosmos_endpoint: AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=abc123==;",
    "  database: AKIAIOSFODNN7EXAMPLE",
], ids=["account-key", "any-plaintext-cosmos-key", "connection-string", "key-like-value"])
def test_a_plaintext_secret_in_config_is_refused_with_a_pointer_to_key_vault(tmp_path, yaml_line):
    root = tmp_path / "p"
    (root / ".alma").mkdir(parents=True)
    (root / ".alma" / "config.yaml").write_text(f"storage: azure\nazure:\n{yaml_line}\n")
    with pytest.raises(SecretInConfig) as err:
        load_config(root)
    assert "plaintext secret" in err.value.message and "keyvault://" in err.value.fix


# ---------------------------------------------------------------- never logged, never written

def test_the_cosmos_key_is_never_logged_nor_written(make_replica, caplog, tmp_path, cosmos_key):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("azure").setLevel(logging.DEBUG)
    a = make_replica("a")
    from alma_hooks.types import ANY, DomainKnowledge

    a.store.add(a.scope(), DomainKnowledge(project_id=PROJECT, agent=ANY, fact="deploy with make release"))
    assert a.worker().run_once().ok
    assert caplog.records, "the SDKs did log at DEBUG"
    for record in caplog.records:
        assert cosmos_key not in record.getMessage()
        assert all(cosmos_key not in str(arg) for arg in (record.args or ()))
    a.store.close()
    needle = cosmos_key.encode()
    for path in tmp_path.rglob("*"):
        if path.is_file() and "node_modules" not in path.parts:
            assert needle not in path.read_bytes(), f"the key was written to {path}"


# ---------------------------------------------------------------- doctor

def test_doctor_checks_key_vault_when_azure_is_configured(tmp_path, keyvault):
    config = kv_config(tmp_path, keyvault.url_template)
    [line] = check_azure(config, {}, resolver_for(config))
    assert line.status == OK and REF in line.detail and "127.0.0.1" in line.detail

    keyvault.secrets.pop("cosmos-key")
    [missing] = check_azure(config, {}, resolver_for(config))
    assert missing.status == FAIL and "404" in missing.detail and "az keyvault secret set" in missing.fix

    keyvault.secrets["cosmos-key"] = "x"
    keyvault.forbidden.add("cosmos-key")
    [forbidden] = check_azure(config, {}, resolver_for(config))
    assert forbidden.status == FAIL and "403" in forbidden.detail and "Key Vault Secrets User" in forbidden.fix

    keyvault.forbidden.clear()
    stale = KeyVaultResolver(config, credential=StaticCredential("stale"), client_options=CLIENT_OPTIONS)
    [refused] = check_azure(config, {}, stale)
    assert refused.status == FAIL and "401" in refused.detail and "az login" in refused.fix


def test_doctor_run_lists_the_key_vault_check_and_a_missing_key_reference(tmp_path, keyvault):
    """The production resolver keeps TLS verification on: the stand-in's self-signed certificate is refused."""
    root = tmp_path / "proj"
    write_config(root, project_id=PROJECT, db_path=tmp_path / "d.db", endpoint="https://127.0.0.1:9/",
                 kv_template=keyvault.url_template, container="c", extra="")
    checks = {c.name: c for c in run_checks(root)}
    line = checks["key vault azure.cosmos_key"]
    assert line.status == FAIL and "cannot reach Key Vault" in line.detail and "TLS" in line.fix
    assert not keyvault.requests, "no request got past the TLS handshake"

    (root / ".alma" / "config.yaml").write_text("storage: azure\nazure:\n  cosmos_endpoint: https://a.documents."
                                                "azure.com:443/\n")
    checks = {c.name: c for c in run_checks(root)}
    assert checks["key vault"].status == FAIL and "keyvault://" in checks["key vault"].fix


def test_doctor_is_silent_about_azure_when_storage_is_local(tmp_path):
    root = tmp_path / "plain"
    root.mkdir()
    assert not [c for c in run_checks(root) if c.name.startswith("key vault")]


def test_sync_commands_refuse_without_storage_azure(tmp_path):
    from alma_hooks.cli import main

    root = tmp_path / "plain"
    root.mkdir()
    result = CliRunner().invoke(main, ["sync", "enable", "--project-dir", str(root)])
    assert result.exit_code == 2 and "storage: azure" in result.output
