"""Standard Webhooks signatures and secrets, and netrc credentials for callback hosts."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import httpx
import pytest

from shared.delivery.sender import Credentials
from shared.delivery.signing import PREFIX, is_valid_secret, new_secret, sign

# The example published with the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def secret_of(size: int) -> str:
    return PREFIX + base64.b64encode(bytes(range(size))).decode()


# --- sign -------------------------------------------------------------------------------


def test_sign_matches_the_specification_example() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_sign_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    secret = secret_of(32)
    body = b'{"id":"e1","type":"task.status.done"}'
    key = base64.b64decode(secret.removeprefix(PREFIX))
    expected = hmac.new(key, b"e1.1700000000." + body, hashlib.sha256).digest()
    assert sign(secret, "e1", 1700000000, body) == "v1," + base64.b64encode(expected).decode()


def test_a_signature_is_v1_and_a_base64_sha256_digest() -> None:
    scheme, _, digest = sign(secret_of(24), "id", 1, b"").partition(",")
    assert scheme == "v1"
    assert len(base64.b64decode(digest, validate=True)) == 32


@pytest.mark.parametrize(
    ("message_id", "timestamp", "body", "secret"),
    [
        ("msg_other", SPEC_TIMESTAMP, SPEC_BODY, SPEC_SECRET),
        (SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY, SPEC_SECRET),
        (SPEC_ID, SPEC_TIMESTAMP, b'{"test": 2432232315}', SPEC_SECRET),
        (SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, secret_of(24)),
    ],
    ids=["id", "timestamp", "body", "secret"],
)
def test_every_signed_part_changes_the_signature(
    message_id: str, timestamp: int, body: bytes, secret: str
) -> None:
    assert sign(secret, message_id, timestamp, body) != SPEC_SIGNATURE


def test_sign_is_deterministic() -> None:
    first = sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == first


# --- secrets ----------------------------------------------------------------------------


def test_a_new_secret_is_whsec_and_base64_of_at_least_24_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) >= 24


def test_new_secrets_differ_every_call() -> None:
    secrets = [new_secret() for _ in range(200)]
    assert len(set(secrets)) == len(secrets)
    keys = {base64.b64decode(s.removeprefix(PREFIX)) for s in secrets}
    assert len(keys) == len(secrets)


def test_a_new_secret_is_valid_and_signs() -> None:
    for _ in range(20):
        secret = new_secret()
        assert is_valid_secret(secret)
        assert sign(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY).startswith("v1,")


@pytest.mark.parametrize("size", [24, 32, 64])
def test_a_secret_of_a_usual_size_is_valid(size: int) -> None:
    assert is_valid_secret(secret_of(size))


def test_the_specification_secret_is_valid() -> None:
    assert is_valid_secret(SPEC_SECRET)


@pytest.mark.parametrize("size", [0, 1, 8, 12])
def test_a_too_short_secret_is_invalid(size: int) -> None:
    assert not is_valid_secret(secret_of(size))


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_this is not base64!",
        "whsec_abc",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
        "whsec_\u00e4\u00f6\u00fc\u00e4\u00f6\u00fc\u00e4\u00f6\u00fc\u00e4\u00f6\u00fc\u00e4\u00f6\u00fc\u00e4",
        "whsec_====",
    ],
    ids=["words", "short-unpadded", "truncated", "non-ascii", "only-padding"],
)
def test_a_secret_that_is_not_base64_is_invalid(secret: str) -> None:
    assert not is_valid_secret(secret)


@pytest.mark.parametrize(
    "secret",
    [
        SPEC_SECRET + "!!",
        "whsec_MfKQ9r8GKYqrTwjUPD8I*LPZIo2LaLaSw",
        "whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw",
    ],
    ids=["trailing-junk", "junk-inside", "space-inside"],
)
def test_a_secret_with_non_base64_characters_is_invalid(secret: str) -> None:
    # Stray characters are not part of any key: a lenient decoder would drop them
    # silently and sign with a key other than the one written down.
    assert not is_valid_secret(secret)


# --- credentials for callback hosts -----------------------------------------------------

NETRC = """\
machine xnat.example.org
  login xnat-user
  password xnat-pass

machine Syncotron.Example.ORG login sync password s3cret
"""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def header_for(auth: httpx.BasicAuth, url: str) -> str:
    flow = auth.sync_auth_flow(httpx.Request("PUT", url))
    return next(flow).headers["authorization"]


@pytest.fixture
def credentials(tmp_path: Path) -> Credentials:
    path = tmp_path / "netrc"
    path.write_text(NETRC)
    path.chmod(0o600)
    return Credentials(path)


@pytest.mark.parametrize(
    "url",
    [
        "https://xnat.example.org/data/services/callback",
        "http://xnat.example.org",
        "https://XNAT.Example.Org:8443/xapi/tasks/17?done=1",
        "https://someone@xnat.example.org/cb",
    ],
)
def test_a_netrc_machine_gives_basic_auth(credentials: Credentials, url: str) -> None:
    auth = credentials.for_url(url)
    assert isinstance(auth, httpx.BasicAuth)
    assert header_for(auth, url) == basic("xnat-user", "xnat-pass")


@pytest.mark.parametrize(
    "url",
    [
        "https://syncotron.example.org/groups/4",
        "https://SYNCOTRON.EXAMPLE.ORG/groups/4",
        "http://Syncotron.Example.ORG:8080/",
    ],
)
def test_a_machine_name_matches_whatever_its_case(credentials: Credentials, url: str) -> None:
    auth = credentials.for_url(url)
    assert isinstance(auth, httpx.BasicAuth)
    assert header_for(auth, url) == basic("sync", "s3cret")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.org/x",
        "https://example.org/",
        "https://sub.xnat.example.org/cb",
        "https://xnat.example.org.evil.test/cb",
        "https://syncotron.example.com/",
        "not a url",
        "",
    ],
)
def test_other_hosts_get_no_credentials(credentials: Credentials, url: str) -> None:
    assert credentials.for_url(url) is None


@pytest.mark.parametrize("url", ["https://xnat.example.org/cb", "https://anything.test/"])
def test_no_netrc_gives_no_credentials(url: str) -> None:
    assert Credentials(None).for_url(url) is None


def test_a_netrc_default_entry_covers_every_other_host(tmp_path: Path) -> None:
    path = tmp_path / "netrc"
    path.write_text(
        "machine xnat.example.org login xnat password x1\ndefault login any password a1\n"
    )
    found = Credentials(path)
    xnat = found.for_url("https://xnat.example.org/data")
    other = found.for_url("http://syncotron:5000/cb")
    assert xnat is not None
    assert other is not None
    request = httpx.Request("PUT", "http://syncotron:5000/cb")
    assert next(other.auth_flow(request)).headers["authorization"] == (
        "Basic " + base64.b64encode(b"any:a1").decode()
    )
