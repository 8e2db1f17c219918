"""Resolve ``keyvault://<vault>/<secret>`` config values with Azure Key Vault; secrets live in memory only.

- The vault URL is ``https://<vault>.vault.azure.net`` unless ``azure.keyvault_url_template``
  (config) or ``ALMA_KEYVAULT_URL_TEMPLATE`` (environment) says otherwise; ``{vault}``
  in the template is replaced by the vault name (a sovereign cloud, a private
  endpoint, or a loopback stand-in in tests).
- The credential is ``azure.credential``: ``default`` (DefaultAzureCredential
  *without* managed identity, so a laptop does not wait on the IMDS probe),
  ``cli``, ``managed_identity`` (short connect timeout, two retries) or
  ``environment``.
- A resolved value is a :class:`Secret`: its ``repr``/``str`` never show it, it
  cannot be pickled, and nothing here logs or writes it; callers reveal it
  only to hand it to an SDK client.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from ..config import KEYVAULT_PREFIX, Config
from ..errors import ConfigError, SecretUnavailable

KEYVAULT_URL_ENV = "ALMA_KEYVAULT_URL_TEMPLATE"
DEFAULT_URL_TEMPLATE = "https://{vault}.vault.azure.net"
CREDENTIALS = ("default", "cli", "managed_identity", "environment")
# Key Vault's own naming rules: vault 3-24 of [a-zA-Z0-9-], secret 1-127 of [a-zA-Z0-9-]
_VAULT = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_NAME = re.compile(r"^[A-Za-z0-9-]{1,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}$")
#: Fail fast: Key Vault answers in well under a second when it answers at all.
CLIENT_TIMEOUTS = {"connection_timeout": 5, "read_timeout": 10, "retry_total": 2}


@dataclass(frozen=True)
class SecretRef:
    """A parsed ``keyvault://<vault>/<secret>[/<version>]`` reference."""

    vault: str
    name: str
    version: str = ""

    def __str__(self) -> str:
        tail = f"/{self.version}" if self.version else ""
        return f"{KEYVAULT_PREFIX}{self.vault}/{self.name}{tail}"


def parse_ref(value: str) -> SecretRef:
    """Parse a Key Vault reference; anything else is a :class:`ConfigError` saying what a reference looks like."""
    fix = "write keyvault://<vault-name>/<secret-name>, e.g. keyvault://team-vault/cosmos-key"
    if not isinstance(value, str) or not value.startswith(KEYVAULT_PREFIX):
        raise ConfigError(f"expected a keyvault://<vault>/<secret> reference, got {value!r}", fix)
    parts = value[len(KEYVAULT_PREFIX):].split("/")
    if len(parts) not in (2, 3) or not _VAULT.match(parts[0]) or not _NAME.match(parts[1]) or (
            len(parts) == 3 and not _VERSION.match(parts[2])):
        raise ConfigError(f"{value!r} is not a valid Key Vault reference", fix)
    return SecretRef(*parts)


class Secret:
    """A secret value that never shows itself in logs, reprs, tracebacks' locals or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for handing straight to an SDK client; never log or store it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def vault_url(vault: str, config: Config | None = None, env: dict[str, str] | None = None) -> str:
    """The base URL of ``vault``: config template, else environment template, else the public cloud's."""
    env = os.environ if env is None else env
    template = (config.get("azure.keyvault_url_template") if config else None) or env.get(KEYVAULT_URL_ENV) \
        or DEFAULT_URL_TEMPLATE
    # without a {vault} placeholder the template is one fixed vault URL (a private endpoint, a stand-in)
    return template.replace("{vault}", vault).rstrip("/")


def make_credential(kind: str) -> Any:
    """An azure-identity credential for ``azure.credential``; fails fast rather than waiting on IMDS."""
    try:
        from azure import identity
    except ImportError as e:
        raise SecretUnavailable("azure-identity is not installed", "pip install 'alma-hooks[azure]'") from e
    if kind == "default":
        # Managed identity is probed over the network (IMDS), which off Azure can take seconds per
        # attempt; ask for it explicitly with `credential: managed_identity` where it exists.
        return identity.DefaultAzureCredential(exclude_managed_identity_credential=True,
                                               exclude_interactive_browser_credential=True, process_timeout=10)
    if kind == "cli":
        return identity.AzureCliCredential(process_timeout=10)
    if kind == "managed_identity":
        return identity.ManagedIdentityCredential(connection_timeout=2, retry_total=2)
    if kind == "environment":
        return identity.EnvironmentCredential()
    raise ConfigError(f"azure.credential must be one of {', '.join(CREDENTIALS)}, got {kind!r}",
                      "set azure.credential: default")


class KeyVaultResolver:
    """Resolves Key Vault references of one configuration, caching values in this process only.

    ``credential`` and ``client_options`` (extra ``SecretClient`` keyword arguments)
    exist for tests and embedders; by default both come from the configuration.
    """

    def __init__(self, config: Config | None = None, *, credential: Any = None, env: dict[str, str] | None = None,
                 client_options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ) if env is None else env
        self._credential = credential
        self._options = {**CLIENT_TIMEOUTS, **(client_options or {})}
        self._clients: dict[str, Any] = {}
        self._cache: dict[SecretRef, Secret] = {}  # process memory only: never written anywhere
        self._lock = threading.Lock()

    @property
    def credential(self) -> Any:
        if self._credential is None:
            kind = str(self.config.get("azure.credential", "default") if self.config else "default")
            self._credential = make_credential(kind)
        return self._credential

    def url_for(self, ref: SecretRef) -> str:
        return vault_url(ref.vault, self.config, self.env)

    def _client(self, url: str) -> Any:
        if url not in self._clients:
            from azure.keyvault.secrets import SecretClient

            self._clients[url] = SecretClient(url, self.credential, **self._options)
        return self._clients[url]

    def resolve(self, reference: str | SecretRef, *, fresh: bool = False) -> Secret:
        """The secret a reference names; :class:`SecretUnavailable` with a fix hint when it cannot be read."""
        ref = reference if isinstance(reference, SecretRef) else parse_ref(reference)
        with self._lock:
            if not fresh and ref in self._cache:
                return self._cache[ref]
            url = self.url_for(ref)
            try:
                value = self._client(url).get_secret(ref.name, ref.version or None).value
            except Exception as e:  # noqa: BLE001 - every failure becomes one explained SecretUnavailable
                raise explain(e, ref, url) from None
            if value is None:
                raise SecretUnavailable(f"{ref} has no value", f"set one: az keyvault secret set --vault-name "
                                        f"{ref.vault} --name {ref.name} --value ...")
            secret = Secret(value)
            self._cache[ref] = secret
            return secret

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._cache.clear()


def explain(exc: BaseException, ref: SecretRef, url: str) -> SecretUnavailable:
    """One line saying why ``ref`` could not be read and how to fix it (never the SDK's raw body)."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ServiceRequestError,
                                       ServiceResponseError)

    try:
        from azure.identity import CredentialUnavailableError
    except ImportError:  # pragma: no cover - azure-identity is a dependency of the azure extra
        CredentialUnavailableError = ()  # type: ignore[assignment,misc]  # noqa: N806
    status = getattr(exc, "status_code", None)
    if isinstance(exc, CredentialUnavailableError):
        return SecretUnavailable(f"no Azure credential available to read {ref}",
                                 "sign in with `az login` (azure.credential: cli), set AZURE_TENANT_ID/"
                                 "AZURE_CLIENT_ID/AZURE_CLIENT_SECRET (environment), or use managed_identity on Azure")
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return SecretUnavailable(f"the Azure credential could not get a token to read {ref}",
                                 "sign in again (`az login`), or check the service principal's tenant, id and secret")
    if status == 401:
        return SecretUnavailable(f"Key Vault {url} refused the credential for {ref} (401)",
                                 "the token is missing, expired or for another tenant: `az login --tenant <tenant>` "
                                 "or check AZURE_TENANT_ID and the service principal")
    if status == 403:
        return SecretUnavailable(f"the signed-in identity may not read {ref} (403 Forbidden)",
                                 f"grant it the 'Key Vault Secrets User' role on vault {ref.vault} (RBAC), or a "
                                 "'get' secret permission in the vault's access policy; check the vault firewall")
    if status == 404:
        return SecretUnavailable(f"no secret {ref.name!r} in vault {ref.vault!r} ({url}, 404)",
                                 f"create it: az keyvault secret set --vault-name {ref.vault} --name {ref.name} "
                                 "--value ..., or fix the reference in .alma/config.yaml")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return SecretUnavailable(f"cannot reach Key Vault at {url} for {ref} (network or TLS error: "
                                 f"{type(exc).__name__})",
                                 "check the vault name, DNS, proxy, firewall and TLS interception "
                                 "(or azure.keyvault_url_template)")
    if isinstance(exc, HttpResponseError):
        return SecretUnavailable(f"Key Vault {url} answered {status} for {ref}", "retry later; see the vault's logs")
    if isinstance(exc, ValueError) and "challenge" in str(exc):
        return SecretUnavailable(f"{url} is not a Key Vault of the expected cloud (its challenge names another "
                                 "resource)", "check azure.keyvault_url_template / ALMA_KEYVAULT_URL_TEMPLATE")
    if isinstance(exc, (ConfigError, SecretUnavailable)):
        return exc if isinstance(exc, SecretUnavailable) else SecretUnavailable(exc.message, exc.fix)
    return SecretUnavailable(f"reading {ref} failed: {type(exc).__name__}", "run `alma-hooks doctor`")
