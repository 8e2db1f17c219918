"""Team sync (a face, like the CLI): the local SQLite replica <-> the team's Cosmos DB container.

- :mod:`.worker`: push the outbox, pull the change feed, last writer wins.
- :mod:`.cosmos`: the container and its documents (the only module that talks to Cosmos).
- :mod:`.retry`: the one retry policy (429 with retry-after, backoff with jitter, bounded).
- :mod:`.keyvault`: ``keyvault://`` references resolved with azure-identity; secrets in memory only.

Nothing here is imported by the hooks: azure stays out of the hook path.
"""
