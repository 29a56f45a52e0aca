"""s3s3.redact: one function masks URLs, signatures and known secrets in everything printed."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions

from s3s3.config import RedisConfig
from s3s3.queue.link import RedisLink
from s3s3.queue.redis_client import refused
from s3s3.redact import RedactingFilter, redact, redact_url, url_secrets


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://user:pw@h:6379/0", "redis://user:***@h:6379/0"),
        ("redis://:pw@h/0", "redis://:***@h/0"),
        ("redis://user@h/0", "redis://user@h/0"),  # a user name alone is not a secret
        ("redis://h:6379/0?password=pw&db=1", "redis://h:6379/0?password=***&db=1"),
        ("redis://h/0?PASSWORD=pw", "redis://h/0?PASSWORD=***"),
        ("rediss://u:p%40ss@h/0?ssl_password=kp", "rediss://u:***@h/0?ssl_password=***"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Signature=abcdef&X-Amz-Security-Token=tok&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
            "&X-Amz-Signature=***&X-Amz-Security-Token=***&X-Amz-Expires=60",
        ),
        (
            "http://h/k?AWSAccessKeyId=AKID&Signature=sig&Expires=1",
            "http://h/k?AWSAccessKeyId=***&Signature=***&Expires=1",
        ),
        (
            "http://h/k?token=t&pass=p&secret=s&auth=a",
            "http://h/k?token=***&pass=***&secret=***&auth=***",
        ),
        ("http://[::1", "http://[::1"),  # unparseable: returned, never an exception
        ("http://u:pw@[::1", "http://u:***@[::1"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_masks_urls_pairs_headers_and_known_secrets_in_text():
    text = (
        "connect to redis://:userinfo-pw@h:1/0 and redis://h:2/0?password=query-pw failed; "
        "headers={'Authorization': b'AWS4-HMAC-SHA256 Credential=AKID/x, "
        "SignedHeaders=host, Signature=0123abcd', 'X-Amz-Security-Token': b'tok123'}; "
        "key was the-secret-key (also the%2Dsecret%2Dkey)\n"
        "Signature:\n" + "a" * 64
    )
    out = redact(text, ["the-secret-key", None, ""])
    for secret in (
        "userinfo-pw",
        "query-pw",
        "AKID",
        "0123abcd",
        "tok123",
        "the-secret-key",
        "a" * 64,
    ):
        assert secret not in out
    assert "redis://:***@h:1/0" in out and "redis://h:2/0?password=***" in out
    assert "'Authorization': b'***'" in out and "failed; headers=" in out


def test_redact_masks_the_longer_of_two_overlapping_secrets_whole():
    assert redact("x abcdefgh y", ["abcd", "abcdefgh"]) == "x *** y"


def test_very_short_secrets_are_not_masked_inside_words():
    assert redact("a bad cab", ["ab"]) == "a bad cab"


def test_url_secrets():
    assert url_secrets("redis://u:p1@h/0?password=p2&db=0&token=t") == ["p1", "p2", "t"]
    assert url_secrets("redis://h/0") == [] and url_secrets(None) == []


def test_safe_url_masks_a_query_password():
    cfg = RedisConfig(url="redis://127.0.0.1:6379/0?password=query-pw", password="key-pw")
    assert cfg.safe_url == "redis://127.0.0.1:6379/0?password=***"
    assert set(cfg.secrets()) == {"query-pw", "key-pw"}


def test_refused_masks_a_query_password():
    """The 'refused' error quoted the query password (redis-py honours ``?password=``)."""
    cfg = RedisConfig(url="redis://127.0.0.1:6379/0?password=query-pw")
    exc = refused(cfg.url, redis.exceptions.AuthenticationError("invalid password"))
    assert str(exc) == (
        "Redis at redis://127.0.0.1:6379/0?password=*** refused s3s3: "
        "AuthenticationError: invalid password"
    )


def test_redis_link_log_lines_mask_the_url(caplog):
    link = RedisLink(
        "redis://127.0.0.1:1/0?password=query-pw", retry_base_s=0.001, retry_max_s=0.001
    )
    with caplog.at_level(logging.INFO, logger="s3s3.listen"):
        link.down(
            redis.exceptions.ConnectionError("Error connecting to redis://:inner-pw@127.0.0.1:1/0")
        )
        link.up()
    text = caplog.text
    assert "query-pw" not in text and "inner-pw" not in text
    assert "redis://127.0.0.1:1/0?password=***" in text


def test_filter_redacts_message_args_and_traceback():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    flt = RedactingFilter(["env-secret"])
    handler.addFilter(flt)
    logger = logging.getLogger("test_redaction.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        flt.add(["ini-secret", None])
        logger.warning("using %s and %s at %s", "env-secret", "ini-secret", "redis://:url-pw@h/0")
        try:
            raise ValueError("boom with ini-secret inside")
        except ValueError:
            logger.exception("failed for redis://h/0?password=%s", "qpw-1")
    finally:
        logger.removeHandler(handler)
    joined = "\n".join(records)
    for secret in ("env-secret", "ini-secret", "url-pw", "qpw-1"):
        assert secret not in joined
    assert "Traceback" in joined and "ValueError: boom with *** inside" in joined
    assert records[0] == "using *** and *** at redis://:***@h/0"
