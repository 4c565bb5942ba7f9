"""Webhooks without a database: Standard Webhooks signatures, the callback URL's form, the SSRF guard."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket

import pytest

from core import webhooks
from core.errors import InvalidInput
from core.webhook_guard import Refused, Target, parse_callback_url, refusal, resolve, shown_url


def test_the_signature_is_the_standard_webhooks_test_vector():
    # The test vector the Standard Webhooks libraries publish.
    signature = webhooks.signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_whsec_and_32_random_bytes_and_sign_what_a_receiver_checks():
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_") and secret != webhooks.new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert len(key) == 32
    headers = webhooks.headers([secret], "msg_1", 1700000000, b'{"a":1}')
    expected = base64.b64encode(hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"


def test_a_rotation_signs_with_each_secret_space_separated():
    new, old = webhooks.new_secret(), webhooks.new_secret()
    headers = webhooks.headers([new, old], "msg_2", 1700000000, b"{}")
    assert headers["webhook-signature"].split() == [
        webhooks.signature(new, "msg_2", 1700000000, b"{}"),
        webhooks.signature(old, "msg_2", 1700000000, b"{}"),
    ]


def test_webhook_secret_may_hold_several_secrets_each_checked_at_start():
    from core.settings import Settings

    two = f"{webhooks.new_secret()} {webhooks.new_secret()}"
    assert Settings.from_env({"WEBHOOK_SECRET": two}).webhook_secret == two
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        Settings.from_env({"WEBHOOK_SECRET": f"{webhooks.new_secret()} whsec_c2hvcnQ="})
    assert Settings.from_env({"WEBHOOK_SECRET": "   "}).webhook_secret == ""  # blank is unset


@pytest.mark.parametrize("secret", ["", "secret", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_unusable_secrets_are_refused(secret):
    with pytest.raises(ValueError):
        webhooks.secret_key(secret)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",  # site-local
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "2001:db8::1",
    ],
)
def test_the_guard_refuses_every_non_public_address(address):
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_the_guard_lets_public_addresses_through(address):
    assert refusal(ipaddress.ip_address(address)) is None


def test_metadata_addresses_are_named_as_such():
    assert refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert refusal(ipaddress.ip_address("fd00:ec2::254")) == "a cloud metadata address"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com/",
        "/relative/path",
        "http://",
        "http://user:pw@example.com/",
        "http://example.com/#fragment",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://example.com/\n",
        "http://bücher.example/",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_callback_urls_of_the_wrong_form_are_refused(url):
    with pytest.raises(InvalidInput) as refused:
        parse_callback_url(url)
    assert refused.value.slug == "invalid-callback-url"


def test_a_callback_url_gives_what_to_resolve_connect_to_and_ask_for():
    target = parse_callback_url("HTTPS://Hooks.Example.com:8443/in/hook?token=s3cret")
    assert target == Target(
        "HTTPS://Hooks.Example.com:8443/in/hook?token=s3cret",
        "https",
        "hooks.example.com",
        8443,
        "/in/hook?token=s3cret",
        "Hooks.Example.com:8443",
    )
    assert parse_callback_url("http://[::1]/").host == "::1"
    assert parse_callback_url("http://example.com").target == "/"


def test_resolving_checks_every_address_unless_allowed():
    with pytest.raises(Refused) as loopback:
        resolve(parse_callback_url("http://localhost:9/"), allow_private=False)
    assert loopback.value.slug == "callback-url-refused" and "loopback" in loopback.value.reason
    with pytest.raises(Refused) as metadata:
        resolve(parse_callback_url("http://169.254.169.254/latest/meta-data"), allow_private=False)
    assert "metadata" in metadata.value.reason
    assert ipaddress.ip_address("127.0.0.1") in resolve(
        parse_callback_url("http://localhost:9/"), allow_private=True
    )
    with pytest.raises(Refused) as missing:
        resolve(parse_callback_url("http://no-such-host.invalid/"), allow_private=True)
    assert "does not resolve" in missing.value.reason
    # The client is told the same whatever the reason: no map of the internal DNS.
    assert loopback.value.detail.replace("localhost", "") == missing.value.detail.replace(
        "no-such-host.invalid", ""
    )


def test_one_owners_stuck_lookups_leave_places_to_the_others(monkeypatch):
    import threading

    from core import webhook_guard

    release = threading.Event()
    real = socket.getaddrinfo

    def silent_for_tarpit(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host.endswith(".tarpit.invalid"):
            release.wait(30)
        return real("localhost", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent_for_tarpit)
    try:
        for n in range(webhook_guard.MAX_LOOKUPS):  # far more than the owner's share
            with pytest.raises(webhook_guard.LookupTimedOut):
                resolve(
                    parse_callback_url(f"http://h{n}.tarpit.invalid/"),
                    allow_private=True,
                    timeout=0.05,
                    owner="a",
                )
        assert resolve(parse_callback_url("http://fine.example/"), allow_private=True, timeout=5, owner="b")
    finally:
        release.set()


def test_the_api_shows_a_callback_url_without_its_query():
    assert shown_url("https://h.example/p?token=s3cret") == "https://h.example/p"
    assert shown_url(None) is None


def test_backoff_is_bounded_however_many_attempts_were_made():
    from core.settings import Settings
    from jobrunner.webhooks import MAX_BACKOFF_SECONDS, backoff_seconds

    settings = Settings.from_env({})
    assert backoff_seconds(settings, 1, None) < backoff_seconds(settings, 3, None)
    for attempt in (31, 1025, 100_000):
        assert MAX_BACKOFF_SECONDS <= backoff_seconds(settings, attempt, None) <= MAX_BACKOFF_SECONDS * 1.2
