"""Run the real ``alma-hooks`` CLI in a subprocess with the two test seams of the Azure tests.

``alma_hooks.sync.worker.open_team_store`` is wrapped so that Key Vault is read
with a static test token (``keyvault_standin.StaticCredential``) and TLS
verification is off for the loopback stand-ins (``connection_verify=False``).
Everything else (config, Key Vault client, Cosmos client, worker, SQLite) is the
production code path. Usage: ``python tests/azure/run_cli.py sync run --once``.
"""

from __future__ import annotations

import sys
import warnings

from keyvault_standin import CLIENT_OPTIONS, StaticCredential

from alma_hooks.cli import main
from alma_hooks.sync import worker
from alma_hooks.sync.keyvault import KeyVaultResolver

warnings.filterwarnings("ignore", message="Unverified HTTPS request")
_open_team_store = worker.open_team_store


def open_team_store(config, **kwargs):  # type: ignore[no-untyped-def]
    resolver = KeyVaultResolver(config, credential=StaticCredential(), client_options=CLIENT_OPTIONS)
    return _open_team_store(config, resolver=resolver, connection_verify=False, **kwargs)


worker.open_team_store = open_team_store

if __name__ == "__main__":
    sys.exit(main(args=sys.argv[1:], prog_name="alma-hooks"))
