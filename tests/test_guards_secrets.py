"""The secrets guard: every provider's token format, keys, JWTs, credentials in headers and
connection strings, high-entropy strings, and the look-alikes that are not secrets.

Tokens are assembled when the tests run (prefix + random body) so that this file holds no
string that a secret scanner would take for a real credential."""

# ruff: noqa: E501 - the table of tokens reads best one per line

from __future__ import annotations

import base64
import hashlib
import json
import random
import string

import pytest

from tether.guards import GuardsPolicy, GuardStack
from tether.guards.secrets import SECRET_KINDS, SecretsDetector

THRESHOLD = 0.5
_rng = random.Random(20261123)
ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.fixture(scope="module", params=["re2", "re"])
def secrets(request: pytest.FixtureRequest) -> SecretsDetector:
    return SecretsDetector(engine=request.param)


def found(detector: SecretsDetector, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in detector.scan(text) if f.score >= THRESHOLD]


JWT = ".".join(
    (b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "4711", "exp": 1767225600}), rand(43))
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(rand(64, ALNUM + "+/") for _ in range(4))
    + "\n-----END RSA PRIVATE KEY-----"
)
OPENSSH = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + rand(70, ALNUM + "+/")
    + "\n-----END OPENSSH PRIVATE KEY-----"
)
AWS_SECRET = rand(40, ALNUM + "/+")

TRUE_POSITIVES = [
    # (kind, value, the text around it)
    ("OPENAI_API_KEY", "sk-proj-" + rand(58) + "T3BlbkFJ" + rand(58), "OPENAI_API_KEY={}"),
    ("OPENAI_API_KEY", "sk-" + rand(20) + "T3BlbkFJ" + rand(20), "use key {} for the batch"),
    ("ANTHROPIC_API_KEY", "sk-ant-" + "api03-" + rand(93, ALNUM + "_-") + "AA", "key: {}"),
    ("AWS_ACCESS_KEY_ID", "AKIA" + rand(16, string.ascii_uppercase + string.digits), "id {},"),
    ("AWS_ACCESS_KEY_ID", "ASIA" + rand(16, string.ascii_uppercase + string.digits), "({})"),
    ("AWS_SECRET_ACCESS_KEY", AWS_SECRET, "aws_secret_access_key = {}\n"),
    ("AWS_SECRET_ACCESS_KEY", AWS_SECRET, 'export AWS_SECRET_ACCESS_KEY="{}"'),
    ("GITHUB_TOKEN", "ghp_" + rand(36), "git clone https://{}@github.com/acme/app"),
    ("GITHUB_TOKEN", "github_pat_" + rand(22) + "_" + rand(59), "token {} expires"),
    ("GITLAB_TOKEN", "glpat-" + rand(20), "PRIVATE-TOKEN: {}"),
    ("SLACK_TOKEN", "xoxb-" + rand(12, string.digits) + "-" + rand(13, string.digits) + "-" + rand(24), "{}"),
    ("SLACK_WEBHOOK", "https://hooks.slack.com/services/T" + rand(10) + "/B" + rand(10) + "/" + rand(24), "post to {}"),
    ("STRIPE_KEY", "sk_" + "live_" + rand(24), "stripe.api_key = '{}'"),
    ("STRIPE_WEBHOOK_SECRET", "whsec_" + rand(32), "{}"),
    ("GOOGLE_API_KEY", "AIza" + rand(35, ALNUM + "_-"), "maps key {} in the page"),
    ("SENDGRID_API_KEY", "SG." + rand(22) + "." + rand(43), "{}"),
    ("NPM_TOKEN", "npm_" + rand(36), "//registry.npmjs.org/:_authToken={}"),
    ("PYPI_TOKEN", "pypi-AgEIcHlwaS5vcmc" + rand(60, ALNUM + "_-"), "password = {}"),
    ("HUGGINGFACE_TOKEN", "hf_" + rand(17, string.ascii_lowercase) + rand(17, string.ascii_uppercase), "HF_TOKEN={}"),
    ("TWILIO_KEY", "SK" + rand(32, "0123456789abcdef"), "twilio {}"),
    ("MAILCHIMP_API_KEY", rand(32, "0123456789abcdef") + "-us14", "mc {}"),
    ("TELEGRAM_BOT_TOKEN", "123456789:AA" + rand(33, ALNUM + "_-"), "bot{}/sendMessage"),
    ("AZURE_STORAGE_KEY", rand(86, ALNUM + "+/") + "==", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};"),
    ("PRIVATE_KEY", PEM, "here is the key:\n{}\nthanks"),
    ("PRIVATE_KEY", OPENSSH, "{}"),
    # A key in a JSON string (a cloud service account's file): its line breaks are "\n"
    # escapes, and "private_key" before it is a password keyword.
    ("PRIVATE_KEY", PEM.replace("\n", "\\n"), '{{"type": "service_account", "private_key": "{}\\n"}}'),
    ("PRIVATE_KEY", PEM.replace("\n", "\\n"), 'private_key: "{}"'),
    ("JWT", JWT, "cookie session={}; Path=/"),
    ("BEARER_TOKEN", rand(32, ALNUM + "-._~"), "Authorization: Bearer {}"),
    ("BASIC_AUTH", base64.b64encode(b"admin:hunter2!").decode(), "Authorization: Basic {}"),
    ("URL_PASSWORD", "s3cr3t-Pa55", "DATABASE_URL=postgres://app:{}@db.internal:5432/app"),
    ("URL_PASSWORD", "hunter2x", "redis://:{}@cache:6379/0"),
    ("URL_PASSWORD", "Zq9!xw", "mongodb+srv://svc:{}@cluster0.example.net/db"),
    # An "@" not percent-encoded in the password or the user name hid the password.
    ("URL_PASSWORD", "p@ss:w0rd!", "postgresql://admin:{}@db:5432/x"),
    ("URL_PASSWORD", "S3cr3tP4ss", "postgres://jane.doe@example.com:{}@db/x"),
    ("PASSWORD", "Tr0ub4dor&3", 'password = "{}"'),
    ("PASSWORD", "hunter2", "DB_PASSWORD: '{}'"),
    ("PASSWORD", "S3cure#2024", "Server=db;User Id=app;Password={};"),
    ("PASSWORD", "x9-Lk2", "client_secret={}"),
    ("HIGH_ENTROPY_STRING", "Zx8Qm2Lp9Rt4Vw7Ny3Kb6Hc1Jd5Fg0Sa", "the value was {} yesterday"),
    # curl's -u/--user user:password (and the proxy's -U/--proxy-user): the password only.
    ("CURL_PASSWORD", "S3cr3t-pw", "curl -u admin:{} https://api.example.com/v1/items"),
    ("CURL_PASSWORD", "Zx9!kQ2", 'curl -s -H "Accept: application/json" --user deploy:{} https://x'),
    ("CURL_PASSWORD", "hunter2x", "curl https://x.example/api -u 'jane:{}' -o out.json"),
    ("CURL_PASSWORD", "Pr0xyPass1", "curl.exe --proxy-user=proxy-svc:{} https://x"),
    ("CURL_PASSWORD", "t0ken-9Qa", "$ curl -X POST -U bob:{} https://x && echo done"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "value", "around"), TRUE_POSITIVES)
def test_finds_each_kind(secrets: SecretsDetector, kind: str, value: str, around: str) -> None:
    assert (kind, value) in found(secrets, around.format(value))


def test_every_kind_has_a_true_positive() -> None:
    assert {kind for kind, _, _ in TRUE_POSITIVES} == set(SECRET_KINDS)


HARD_NEGATIVES = [
    # Words near the keywords, and templates instead of values.
    "Password reset: click the link below. Your password must be 12 characters.",
    "Set the api_key parameter in config.yaml; token limits apply per request.",
    "DB_PASSWORD=${DB_PASSWORD} and password: <your password> and secret={{ vault.secret }}",
    "postgres://app:${PGPASSWORD}@db/app and redis://:****@cache:6379",
    "Bearer of good news: the basic plan costs less.",
    # Prefixes without a token behind them.
    "sk-learn is a library; AKIA is a prefix; ghp_ is GitHub's; xoxb- is Slack's",
    # Ids, hashes and paths: long, but not secrets.
    "request 550e8400-e29b-41d4-a716-446655440000 failed",
    "def getUserAccountSettingsById(user_id): return settings_repository.find(user_id)",
    "/usr/local/lib/python3.11/site-packages/sqlalchemy/engine/base.py line 1969",
    "AbstractSingletonProxyFactoryBean TransactionAwarePersistenceManagerFactoryProxy",
    # "basic" followed by a word, not base64 of user:password.
    "Authorization: Basic questions go to the help desk",
    # A PEM public key or certificate is not a private key.
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    # -u of other tools (a user, a uid:gid), and curl's without a password or with a template.
    "docker run -u 1000:1000 -v /data:/data app:latest",
    "sudo -u postgres psql -c 'select 1'; ps -u root; git diff -u a b",
    "curl -s https://get.example/install.sh | docker run --rm -u app:app image:tag",
    "mycurl -u ops:deploy2024 is not curl",
    "curl -u admin https://x (curl asks for the password) and curl -u admin: https://x",
    'curl -u "$API_USER:$API_TOKEN" https://x and curl --user user:password https://x',
    "With curl, -u sets the user; see also wget --user jane",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives(secrets: SecretsDetector, text: str) -> None:
    assert found(secrets, text) == []


def test_a_jwt_shape_with_a_header_that_is_not_json_is_no_jwt(secrets: SecretsDetector) -> None:
    # '{"' encodes as "eyJ": the header starts like a JWT's but does not decode to JSON.
    fake = ".".join(b64url_text(t) for t in ('{"alg" is missing', '{"sub":"1"}', "signature!"))
    assert fake.startswith("eyJ")
    assert "JWT" not in {f.kind for f in secrets.scan(f"token {fake} here")}


def b64url_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_hex_digests_score_below_the_usual_threshold(secrets: SecretsDetector) -> None:
    commit = hashlib.sha1(b"release 1.4").hexdigest()
    digest = hashlib.sha256(b"tether-0.1.0.tar.gz").hexdigest()
    findings = secrets.scan(f"commit {commit}, sha256 {digest}")
    assert [f.kind for f in findings] == ["HIGH_ENTROPY_STRING", "HIGH_ENTROPY_STRING"]
    assert all(0 < f.score < THRESHOLD for f in findings)


def test_a_keyword_value_that_is_a_known_token_gets_its_kind(secrets: SecretsDetector) -> None:
    token = "ghp_" + rand(36)
    assert found(secrets, f"api_key = '{token}'") == [("GITHUB_TOKEN", token)]
    assert found(secrets, f"https://bot:{token}@github.com/x") == [("GITHUB_TOKEN", token)]


def test_private_key_block_stops_at_its_end_line(secrets: SecretsDetector) -> None:
    text = f"{PEM}\nRegards, the ops team. Next steps: rotate it."
    assert found(secrets, text) == [("PRIVATE_KEY", PEM)]
    # Without an END line the body (base64) is still covered.
    cut = PEM.rsplit("\n", 1)[0]
    assert found(secrets, cut + "\n") == [("PRIVATE_KEY", cut + "\n")]


def test_curl_user_password_is_masked_and_the_user_kept() -> None:
    policy = GuardsPolicy.model_validate({"guards": [{"guard": "secrets", "action": "mask"}]})
    text = "run: curl --fail -u svc-reports:Qm7-xT4!pz https://api.example.com/export\n"
    verdict = GuardStack(policy).check(text, "tool_args")
    assert verdict.redacted == (
        "run: curl --fail -u svc-reports:<CURL_PASSWORD> https://api.example.com/export\n"
    )


def test_finding_spans_only_the_secret(secrets: SecretsDetector) -> None:
    text = "conn = postgres://report:Pa55-w0rd@db.example.com:5432/sales"
    [finding] = secrets.scan(text)
    assert text[: finding.start].endswith("report:")
    assert text[finding.end :].startswith("@db.example.com")


def test_engines_agree() -> None:
    text = "\n".join(a.format(v) for _, v, a in TRUE_POSITIVES) + "\n" + "\n".join(HARD_NEGATIVES)
    assert SecretsDetector(engine="re2").scan(text) == SecretsDetector(engine="re").scan(text)


def test_kinds_narrow_what_is_reported() -> None:
    text = "AKIA" + rand(16, string.ascii_uppercase) + " and " + JWT
    assert [f.kind for f in SecretsDetector(kinds=["JWT"]).scan(text)] == ["JWT"]
    with pytest.raises(ValueError, match="unknown secret kind"):
        SecretsDetector(kinds=["OPENAI"])
