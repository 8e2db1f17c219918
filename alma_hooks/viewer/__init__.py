"""The local web viewer (``alma-hooks ui``): a face, like the CLI, the hook events and the engine.

- :mod:`.api`: what the page can ask and do, as plain methods over the store's scoped
  APIs (one project and agent per call) that return JSON-able dicts;
- :mod:`.server`: the HTTP layer on 127.0.0.1: the token, the cookie, CSRF and Host
  checks, JSON errors, the static files in ``static/``.

Nothing in the hook path imports this package.
"""
