"""Tests of alma_hooks.redact: secrets out, everything else kept.

Every fake secret below is built by concatenation so that this file itself
does not trip secret scanners; the values are format-valid but fake (the AWS
ones are AWS's own documentation examples).
"""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alma_hooks.redact import KINDS, PRIVATE_MARK, contains_secret, redact, redact_obj

# --- fake secrets ------------------------------------------------------------------

AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
GITHUB_PAT = "ghp_" + "FAKEfake0123456789" + "abcdEFGH0123456789"
GITHUB_FINE = "github_pat_" + "11FAKE0000000000000000_" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRST"
GITLAB = "glpat-" + "FAKE0123456789abcdef"
SLACK = "xoxb-" + "123456789012-1234567890123-" + "FAKEfakeFAKEfakeFAKEfake"
SLACK_HOOK = "https://hooks.slack.com/services/" + "T00000000/B00000000/" + "FAKEfakeFAKEfakeFAKEfake"
STRIPE = "sk_" + "live_" + "FAKE4eC39HqLyjWDarjtT1zdp7dc"
GOOGLE = "AIza" + "SyFAKE-0123456789abcdefghijklmnopqr"
ANTHROPIC = "sk-ant-" + "api03-FAKE0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH-FAKEfake"
OPENAI = "sk-proj-" + "FAKEabc123DEF456ghi789JKL012mno345PQR678stu901VWX"
NPM = "npm_" + "FAKEfake0123456789abcdefghijklmnopqr"
SENDGRID = "SG." + "FAKEfake0123456789abcd" + "." + "FAKEfake0123456789abcdefghijklmnopqrstuvwxy"
TWILIO = "SK" + "0123456789abcdef" + "0123456789abcdef"
HUGGINGFACE = "hf_" + "FAKEfake0123456789abcdefghijklmnop"
PYPI = "pypi-" + "AgEIcHlwaS5vcmcCJGFAKE" + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
AZURE_KEY = "FAKEfake0123456789+/" * 4 + "abcdef" + "=="  # 86 base64 chars + "=="
AZURE_SIG = "FAKEfake0123456789" + "%2BabcDEF%3D"
AZURE_CLIENT_SECRET = "abc8Q~" + "FAKEfake0123456789.-_~FAKEfake0123"
JWT = ".".join(
    ["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0", "FAKEsig0123456789abcdefghij-_FAKEsig"]
)
PEM_BODY = "MIIEowIBAAKCAQEA" + "FAKEfake0123456789abcdefghijklmnopqrstuvwxyzABCD"
PEM = "\n".join(
    ["-----BEGIN RSA " + "PRIVATE KEY-----", PEM_BODY, "FAKEfake0123456789+/==", "-----END RSA " + "PRIVATE KEY-----"]
)
OPAQUE = "9fK2mQ7xLp3Rt8Zw1V" + "b6Nc4Hy0Jd5Sg2Ae7Uo"
BASIC = base64.b64encode(b"alice:" + b"wonderland1").decode()

# text, the secret that must go, the kind of its marker, words that must stay
CORPUS = [
    pytest.param(
        "Deploy with AWS_ACCESS_KEY_ID=" + AWS_KEY_ID + " in region eu-west-1, please",
        AWS_KEY_ID, "aws_key", ["Deploy with AWS_ACCESS_KEY_ID=", "region eu-west-1"],
        id="prompt-aws-access-key",
    ),
    pytest.param(
        "$ cat ~/.aws/credentials\n[default]\naws_secret_access_key = " + AWS_SECRET + "\nregion = eu-west-1",
        AWS_SECRET, "aws_secret", ["[default]", "aws_secret_access_key = ", "region = eu-west-1"],
        id="tool-aws-credentials-file",
    ),
    pytest.param(
        "aws configure set aws_secret_access_key " + AWS_SECRET + " --profile ci",
        AWS_SECRET, "aws_secret", ["aws configure set aws_secret_access_key", "--profile ci"],
        id="bash-aws-configure",
    ),
    pytest.param(
        "$ git remote -v\norigin\thttps://x-access-token:" + GITHUB_PAT + "@github.com/acme/api.git (fetch)",
        GITHUB_PAT, "github_token", ["origin", "@github.com/acme/api.git (fetch)"],
        id="tool-git-remote-github-token",
    ),
    pytest.param(
        "export GH_TOKEN=" + GITHUB_FINE + " && gh pr list",
        GITHUB_FINE, "github_token", ["export GH_TOKEN=", "&& gh pr list"],
        id="bash-github-fine-grained-pat",
    ),
    pytest.param(
        "glab auth login --hostname gitlab.com --token " + GITLAB,
        GITLAB, "gitlab_token", ["glab auth login --hostname gitlab.com --token"],
        id="bash-gitlab-token",
    ),
    pytest.param(
        "curl -X POST -H 'Authorization: Bearer " + SLACK + "' https://slack.com/api/chat.postMessage",
        SLACK, "slack_token", ["Authorization: Bearer", "chat.postMessage"],
        id="bash-slack-bot-token",
    ),
    pytest.param(
        "Notify the team: curl -X POST -d '{\"text\": \"deployed\"}' " + SLACK_HOOK,
        SLACK_HOOK, "slack_webhook", ["Notify the team", "deployed"],
        id="bash-slack-webhook",
    ),
    pytest.param(
        'import stripe\nstripe.api_key = "' + STRIPE + '"\nstripe.Charge.create(amount=100)',
        STRIPE, "stripe_key", ["stripe.api_key = ", "stripe.Charge.create(amount=100)"],
        id="code-stripe-live-key",
    ),
    pytest.param(
        "GET https://maps.googleapis.com/maps/api/geocode/json?address=Paris&key=" + GOOGLE + " -> 200",
        GOOGLE, "google_api_key", ["address=Paris&key=", "-> 200"],
        id="tool-google-api-key",
    ),
    pytest.param(
        "my key is " + ANTHROPIC + ", why does the SDK return 401?",
        ANTHROPIC, "anthropic_key", ["my key is", "why does the SDK return 401?"],
        id="prompt-anthropic-key",
    ),
    pytest.param(
        "export OPENAI_API_KEY=" + OPENAI,
        OPENAI, "openai_key", ["export OPENAI_API_KEY="],
        id="bash-openai-key",
    ),
    pytest.param(
        "DefaultEndpointsProtocol=https;AccountName=almastore;AccountKey="
        + AZURE_KEY
        + ";EndpointSuffix=core.windows.net",
        AZURE_KEY, "azure_key", ["AccountName=almastore", "AccountKey=", "EndpointSuffix=core.windows.net"],
        id="config-azure-storage-connection-string",
    ),
    pytest.param(
        '$ az storage account keys list -n almastore\n[{"keyName": "key1", "permissions": "FULL", "value": "'
        + AZURE_KEY
        + '"}]',
        AZURE_KEY, "azure_key", ['"keyName": "key1"', '"permissions": "FULL"'],
        id="tool-azure-bare-account-key",
    ),
    pytest.param(
        "azcopy copy ./build 'https://almastore.blob.core.windows.net/site?sv=2022-11-02&ss=b&sp=rwdlac"
        "&se=2030-01-01T00:00:00Z&sig=" + AZURE_SIG + "' --recursive",
        AZURE_SIG, "azure_sas", ["azcopy copy ./build", "sv=2022-11-02", "--recursive"],
        id="bash-azure-sas-url",
    ),
    pytest.param(
        "BlobEndpoint=https://almastore.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig="
        + AZURE_SIG,
        AZURE_SIG, "azure_sas", ["BlobEndpoint=https://almastore.blob.core.windows.net/;SharedAccessSignature="],
        id="config-azure-sas-connection-string",
    ),
    pytest.param(
        "COSMOS_CONNECTION_STRING=AccountEndpoint=https://alma.documents.azure.com:443/;AccountKey=" + AZURE_KEY + ";",
        AZURE_KEY, "azure_key", ["AccountEndpoint=https://alma.documents.azure.com:443/;AccountKey="],
        id="bash-cosmos-connection-string",
    ),
    pytest.param(
        "AZURE_CLIENT_SECRET=" + AZURE_CLIENT_SECRET + " az login --service-principal",
        AZURE_CLIENT_SECRET, "azure_client_secret", ["AZURE_CLIENT_SECRET=", "az login --service-principal"],
        id="bash-entra-client-secret",
    ),
    pytest.param(
        'HTTP/1.1 200 OK\n{"access_token": "' + JWT + '", "expires_in": 3600}',
        JWT, "jwt", ["HTTP/1.1 200 OK", '"expires_in": 3600'],
        id="tool-jwt-in-json",
    ),
    pytest.param(
        "$ cat deploy/id_rsa\n" + PEM + "\n$ echo done",
        PEM_BODY, "private_key", ["$ cat deploy/id_rsa", "$ echo done"],
        id="tool-pem-private-key",
    ),
    pytest.param(
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n'
        + PEM_BODY
        + '\\n-----END PRIVATE KEY-----\\n", "client_email": "ci@alma.iam.gserviceaccount.com"}',
        PEM_BODY, "private_key", ['"type": "service_account"', '"client_email"'],
        id="tool-pem-in-service-account-json",
    ),
    pytest.param(
        "psql postgres://app_user:" + "s3cr3t-Pa55" + "@db.internal:5432/orders -c 'select 1'",
        "s3cr3t-Pa55", "password", ["psql postgres://app_user:", "@db.internal:5432/orders"],
        id="bash-url-password",
    ),
    pytest.param(
        "# .env\nDB_HOST=db.internal\nDB_PASSWORD=" + "hunter2" + "\nDB_PORT=5432",
        "hunter2", "password", ["DB_HOST=db.internal", "DB_PASSWORD=", "DB_PORT=5432"],
        id="tool-dotenv-password",
    ),
    pytest.param(
        'export X_TOKEN="' + "tok-8f3a2b1c9d" + '" && ./deploy.sh',
        "tok-8f3a2b1c9d", "token", ['export X_TOKEN="', "./deploy.sh"],
        id="bash-export-quoted-token",
    ),
    pytest.param(
        "database:\n  user: app\n  password: " + "Tr0ub4dor&3" + "\n  host: db.internal",
        "Tr0ub4dor&3", "password", ["user: app", "password: ", "host: db.internal"],
        id="tool-yaml-password",
    ),
    pytest.param(
        '{"username": "bob", "password": "' + "correct horse battery" + '"}',
        "correct horse battery", "password", ['"username": "bob"', '"password": '],
        id="tool-json-password",
    ),
    pytest.param(
        "curl -H 'Authorization: Bearer " + OPAQUE + "' https://api.example.com/v1/me",
        OPAQUE, "bearer_token", ["curl -H 'Authorization: Bearer", "https://api.example.com/v1/me"],
        id="bash-bearer-header",
    ),
    pytest.param(
        "> GET /private HTTP/1.1\n> Authorization: Basic " + BASIC + "\n< HTTP/1.1 200 OK",
        BASIC, "basic_auth", ["> GET /private HTTP/1.1", "Authorization: Basic", "< HTTP/1.1 200 OK"],
        id="tool-basic-auth-header",
    ),
    pytest.param(
        "mysql --user=root --password=" + "Sup3rS3cret!" + " orders < dump.sql",
        "Sup3rS3cret!", "password", ["mysql --user=root --password=", "orders < dump.sql"],
        id="bash-cli-password-flag",
    ),
    pytest.param(
        "mytool deploy --api-key " + "k3y-9a8b7c6d5e" + " --env prod",
        "k3y-9a8b7c6d5e", "api_key", ["mytool deploy --api-key", "--env prod"],
        id="bash-cli-api-key-flag",
    ),
    pytest.param(
        "curl -u deploy:" + "Hunter2Pass" + " https://ci.example.com/api/build",
        "Hunter2Pass", "password", ["curl -u deploy:", "https://ci.example.com/api/build"],
        id="bash-curl-user-password",
    ),
    pytest.param(
        "$ cat .npmrc\n//registry.npmjs.org/:_authToken=" + NPM,
        NPM, "npm_token", ["$ cat .npmrc", "//registry.npmjs.org/:_authToken="],
        id="tool-npmrc-token",
    ),
    pytest.param(
        "SENDGRID_API_KEY=" + SENDGRID + " python send_mail.py",
        SENDGRID, "sendgrid_key", ["SENDGRID_API_KEY=", "python send_mail.py"],
        id="bash-sendgrid-key",
    ),
    pytest.param(
        "$ twilio api:core:keys:create\nSID                                 Friendly Name\n" + TWILIO + "  ci-key",
        TWILIO, "twilio_key", ["Friendly Name", "ci-key"],
        id="tool-twilio-api-key",
    ),
    pytest.param(
        "huggingface-cli login --token " + HUGGINGFACE + " --add-to-git-credential",
        HUGGINGFACE, "huggingface_token", ["huggingface-cli login --token", "--add-to-git-credential"],
        id="bash-huggingface-token",
    ),
    pytest.param(
        "TWINE_USERNAME=__token__ TWINE_PASSWORD=" + PYPI + " twine upload dist/*",
        PYPI, "pypi_token", ["TWINE_USERNAME=__token__", "twine upload dist/*"],
        id="bash-pypi-token",
    ),
    pytest.param(
        "The build log printed " + OPAQUE + " right before the crash, is that bad?",
        OPAQUE, "high_entropy", ["The build log printed", "right before the crash"],
        id="prompt-generic-high-entropy",
    ),
]

NEGATIVES = [
    pytest.param("commit 3f786850e387550fdab836ed7e6dc881de23001b\nAuthor: Ada <ada@example.com>", id="commit-sha"),
    pytest.param(
        "9fceb02 (HEAD -> main) fix flaky test_user_can_checkout_with_saved_card", id="short-sha-and-test-name"
    ),
    pytest.param("request_id=550e8400-e29b-41d4-a716-446655440000 status=200", id="uuid"),
    pytest.param(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  dist/alma_hooks-0.1.0.tar.gz",
        id="sha256sum",
    ),
    pytest.param(
        "FROM python:3.11-slim@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        id="docker-digest",
    ),
    pytest.param(
        "/home/runner/work/alma-hooks/alma-hooks/alma_hooks/retrieval/search_engine_v2.py:42: AssertionError",
        id="file-path",
    ),
    pytest.param(
        "~/.cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/"
        "8b3219a92973c328a8e22fadcfa821b5dc75636a/model.onnx",
        id="model-cache-path",
    ),
    pytest.param(
        "tests/test_checkout.py::test_user_can_checkout_with_saved_card PASSED [ 50%]\n"
        "tests/test_auth.py::test_password_reset_sends_token_email FAILED [100%]\n"
        "E   AssertionError: assert 'token' == 'tok'\n"
        "========================= 1 failed, 1 passed in 0.12s =========================",
        id="pytest-output",
    ),
    pytest.param(
        "def login(username: str, password: str, token: Optional[str] = None) -> bool:\n"
        "    password = getpass.getpass()\n"
        "    token = get_token(username)\n"
        "    tokens = tokenizer.encode(prompt)\n"
        "    resp = client.messages.create(max_tokens=1024, api_key=api_key)\n"
        "    token_count = len(tokens)\n"
        "    if token == 'abc':\n"
        "        self.password = password\n"
        "    return check(password=password, token=token)\n",
        id="python-code",
    ),
    pytest.param(
        "const apiKey = process.env.OPENAI_API_KEY;\nheaders['Authorization'] = `Bearer ${apiKey}`;", id="js-code"
    ),
    pytest.param(
        "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n  DB_PASSWORD: ${DB_PASSWORD}\nsecretName: my-tls",
        id="ci-yaml-references",
    ),
    pytest.param(
        'cosmos:\n  key: "@Microsoft.KeyVault(SecretUri=https://alma.vault.azure.net/secrets/cosmos-key/)"',
        id="key-vault-reference",
    ),
    pytest.param("usage: alma-hooks login [-h] [--token TOKEN] [--password PASSWORD]", id="argparse-help"),
    pytest.param(
        '"integrity": "sha512-'
        + '3lYeGEyh7bQ9TZiBrqPAQ5Xw6ycLtwpwtV2tnhumK7a1ttXpqpPgh7c8NuQbSNpNkOv1mQiVfVKsk2pNU0vBpw=="',
        id="npm-integrity-hash",
    ),
    pytest.param(
        "Loaded sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2 and QDQDisableWeightAdjustForInt32Bias",
        id="model-and-identifier-names",
    ),
    pytest.param(
        "export OPENAI_API_KEY=<your-key>\nAPI_KEY=sk-...\npassword: ********", id="placeholders"
    ),
    pytest.param(
        ":param token: the token to refresh\n:type credential: ~azure.core.credentials.TokenCredential",
        id="docstring-fields",
    ),
    pytest.param("Reset your password: click the link in the email we sent you.", id="prose"),
    pytest.param(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@laptop",
        id="ssh-public-key",
    ),
]


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# --- the corpus ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secret", "kind", "kept"), CORPUS)
def test_corpus_secret_is_replaced_by_its_marker(text, secret, kind, kept):
    redacted = redact(text)
    assert secret not in redacted
    assert marker(kind) in redacted
    for words in kept:
        assert words in redacted


@pytest.mark.parametrize(("text", "secret", "kind", "kept"), CORPUS)
def test_corpus_is_flagged_by_contains_secret(text, secret, kind, kept):
    assert contains_secret(text)


@pytest.mark.parametrize(("text", "secret", "kind", "kept"), CORPUS)
def test_corpus_redaction_is_idempotent(text, secret, kind, kept):
    once = redact(text)
    assert redact(once) == once


def test_corpus_covers_at_least_twenty_formats():
    kinds = {param.values[2] for param in CORPUS}
    assert len(kinds) >= 20
    assert kinds <= KINDS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("export OPENAI_API_KEY=" + OPENAI, "export OPENAI_API_KEY=[REDACTED:openai_key]", id="openai"),
        pytest.param(
            "postgres://user:" + "pa55word" + "@host/db", "postgres://user:[REDACTED:password]@host/db", id="url"
        ),
        pytest.param("DB_PASSWORD=" + "hunter2", "DB_PASSWORD=[REDACTED:password]", id="dotenv"),
        pytest.param('"password": "' + "hunter2" + '"', '"password": "[REDACTED:password]"', id="json"),
        pytest.param("Authorization: Bearer " + OPAQUE, "Authorization: Bearer [REDACTED:bearer_token]", id="bearer"),
    ],
)
def test_exact_output_keeps_names_and_punctuation(text, expected):
    assert redact(text) == expected


def test_every_marker_names_a_known_kind():
    everything = "\n".join(param.values[0] for param in CORPUS)
    kinds = re.findall(r"\[REDACTED:([a-z_]+)\]", redact(everything))
    assert kinds
    assert set(kinds) <= KINDS


# --- what must stay -------------------------------------------------------------------


@pytest.mark.parametrize("text", NEGATIVES)
def test_non_secrets_are_left_unchanged(text):
    assert redact(text) == text
    assert not contains_secret(text)


def test_non_str_input_is_returned_unchanged():
    data = b"password=" + b"hunter2"
    assert redact(data) is data
    assert redact(None) is None
    assert redact(42) == 42
    assert not contains_secret(data)


def test_empty_string():
    assert redact("") == ""
    assert not contains_secret("")


# --- <private> ------------------------------------------------------------------------


def test_private_span_becomes_private_marker():
    text = "Use the staging DB. <private>my SSN is 078-05-1120</private> Then run the tests."
    assert redact(text) == "Use the staging DB. " + PRIVATE_MARK + " Then run the tests."


def test_private_span_is_multiline_and_case_insensitive():
    text = "before <PRIVATE>line one\nline two\n</Private> middle <private>x</private> after"
    assert redact(text) == "before [PRIVATE] middle [PRIVATE] after"


def test_unclosed_private_redacts_to_the_end():
    text = "keep this <private>the rest\nof the transcript " + GITHUB_PAT
    assert redact(text) == "keep this [PRIVATE]"


def test_secret_inside_private_is_gone_and_outside_is_redacted():
    text = "<private>" + STRIPE + "</private> and " + GITLAB
    redacted = redact(text)
    assert redacted == "[PRIVATE] and " + marker("gitlab_token")


def test_private_alone_is_not_a_secret():
    assert not contains_secret("<private>my home address</private>")


def test_private_lookalikes_are_left_alone():
    text = "(r'<PRIVATE|PRIVATE>)', Keyword.Namespace) and <privateer> tags"
    assert redact(text) == text


# --- redact_obj -----------------------------------------------------------------------


def test_redact_obj_walks_nested_data_and_returns_a_new_object():
    payload = {
        "tool_name": "Bash",
        "tool_input": {"command": "export OPENAI_API_KEY=" + OPENAI, "timeout": 120},
        "history": [("curl -u deploy:" + "Hunter2Pass" + " https://ci", 0), None, True, 3.5],
        "password=" + "hunter2": ["<private>x</private>"],
    }
    redacted = redact_obj(payload)
    assert redacted == {
        "tool_name": "Bash",
        "tool_input": {"command": "export OPENAI_API_KEY=[REDACTED:openai_key]", "timeout": 120},
        "history": [("curl -u deploy:[REDACTED:password] https://ci", 0), None, True, 3.5],
        "password=[REDACTED:password]": ["[PRIVATE]"],
    }
    assert payload["tool_input"]["command"].endswith(OPENAI)  # the input is not modified
    assert isinstance(redacted["history"][0], tuple)


def test_redact_obj_leaves_non_str_leaves_alone():
    data = b"password=" + b"hunter2"
    assert redact_obj([1, None, data]) == [1, None, data]


# --- contains_secret --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("cosmos:\n  key: " + AZURE_KEY, id="bare-cosmos-key"),
        pytest.param("cosmos:\n  connection_string: AccountEndpoint=https://a/;AccountKey=" + AZURE_KEY, id="conn"),
        pytest.param("github:\n  token: " + GITHUB_PAT, id="github-token"),
        pytest.param("smtp:\n  password: " + "Tr0ub4dor&3", id="yaml-password"),
    ],
)
def test_contains_secret_finds_plaintext_secrets_in_config(text):
    assert contains_secret(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            'cosmos:\n  key: "@Microsoft.KeyVault(SecretUri=https://alma.vault.azure.net/secrets/k/)"', id="kv"
        ),
        pytest.param("cosmos:\n  key: kv://alma-vault/cosmos-key", id="kv-uri"),
        pytest.param("smtp:\n  password: ${SMTP_PASSWORD}", id="env-reference"),
        pytest.param("retrieval:\n  token_budget: 2000\n  max_tokens: 512\n  model: all-MiniLM-L6-v2", id="settings"),
    ],
)
def test_contains_secret_accepts_references_and_settings(text):
    assert not contains_secret(text)


# --- idempotence on arbitrary mixes ---------------------------------------------------

FRAGMENTS = [
    "password", "PASSWORD", "token", "Token", "secret", "api_key", "apiKey", "=", ":", ": ", " = ", '"', "'",
    "\\", "\n", " ", "\t", "[REDACTED:token]", "[PRIVATE]", "<private>", "</private>", "self.", "(", ")", "[", "]",
    "$", "...", "***", "@", "/", ".", "https://", "user", "Bearer ", "Authorization", "curl ", "-u ", "--token ",
    "AccountKey=", "?sig=", "&", ";", "eyJ", "==", "-", "_", "hunter2", "Q~", "abc8Q~", "a" * 31,
    AWS_KEY_ID, GITHUB_PAT, OPAQUE, JWT, AZURE_KEY, STRIPE, "-----BEGIN RSA PRIVATE KEY-----", PEM_BODY,
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_redaction_is_idempotent_on_any_mix(text):
    once = redact(text)
    assert redact(once) == once


# --- large input --------------------------------------------------------------------------


def test_ten_megabytes_are_redacted():
    block = "\n".join(
        [
            "tests/test_checkout.py::test_user_can_checkout_with_saved_card PASSED [ 50%]",
            "    resp = client.messages.create(max_tokens=1024, api_key=api_key)",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            "export OPENAI_API_KEY=" + OPENAI,
            "The quick brown fox jumps over the lazy dog. " * 20,
            "psql postgres://app_user:" + "s3cr3t-Pa55" + "@db.internal:5432/orders",
        ]
    )
    text = "\n".join([block] * (10_000_000 // len(block) + 1))
    assert len(text) >= 10_000_000
    redacted = redact(text)
    assert OPENAI not in redacted
    assert "s3cr3t-Pa55" not in redacted
    assert redacted.count(marker("openai_key")) == text.count(OPENAI)
    test_name = "test_user_can_checkout_with_saved_card"
    assert redacted.count(test_name) == text.count(test_name)


def test_pathological_inputs_finish():
    # Shapes that would make a naive pattern backtrack; each must simply complete.
    for text in [
        "a" * 200_000,
        "password=" * 20_000,
        "password: " * 20_000,
        "<private" * 20_000,
        "-----BEGIN PRIVATE KEY-----" * 5_000,
        "http://" + "u" * 200_000,
        "sk-" * 50_000,
        "curl " * 40_000,
        "-u x:" * 40_000,
        "--token " * 20_000,
        '"' * 100_000,
    ]:
        redacted = redact(text)
        assert redact(redacted) == redacted


# ---------------------------------------------------------------- cutting before redacting (found by the hook corpus test)

def _fragments(secret: str) -> list[str]:
    return [secret[i:i + 12] for i in range(0, len(secret) - 11)]


@pytest.mark.parametrize("at", [1, 5, 20, len(HUGGINGFACE) - 1])
def test_a_secret_straddling_a_cut_is_redacted_whole(at):
    from alma_hooks.redact import cut_head, cut_tail, redact_head

    text = "huggingface-cli login --token " + HUGGINGFACE + " and then retry"
    limit = text.index(HUGGINGFACE) + at  # the cut falls inside the token
    head = redact_head(text, limit)
    assert len(head) <= limit and not any(f in head for f in _fragments(HUGGINGFACE))
    assert HUGGINGFACE in cut_head(text, limit)  # whole tokens: the redactor sees the secret
    tail_limit = len(text) - text.index(HUGGINGFACE) - at
    assert HUGGINGFACE in cut_tail(text, tail_limit)


def test_summaries_redact_before_cutting_and_joining_lines():
    from alma_hooks.learning.outcomes import MAX_SUMMARY, summarize_input, summarize_result

    command = "x" * (MAX_SUMMARY - 10) + " --token " + HUGGINGFACE
    assert not any(f in summarize_input("Bash", {"command": command}) for f in _fragments(HUGGINGFACE))
    yaml = "database:\n  user: app\n  password: Tr0ub4dor&3\n  host: db.internal\n"
    summary = summarize_result("Bash", {"stdout": yaml})
    assert "Tr0ub4dor" not in summary and "host: db.internal" in summary


def test_spooled_long_strings_are_cut_between_tokens():
    from alma_hooks import spool

    text = "a" * (spool.MAX_CHARS_HEAD - 5) + " " + HUGGINGFACE + " " + "b " * spool.MAX_CHARS_TAIL
    bounded = spool._bounded({"stdout": text})["stdout"]
    assert HUGGINGFACE in bounded and not any(f in redact(bounded) for f in _fragments(HUGGINGFACE))
