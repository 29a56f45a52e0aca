"""Redaction: one place that takes secrets out of anything s3s3 prints.

:func:`redact_url` masks a URL's userinfo password and the values of query parameters that
carry secrets (``password``, ``token``, ``X-Amz-Signature``...). :func:`redact` does that for
every URL inside a text, masks ``key=value`` pairs with such keys outside URLs (botocore's
``Authorization`` header, a presigned query quoted in a message), and replaces every known
secret value (the configured secret keys, Redis passwords) by ``***``. :class:`RedactingFilter`
applies :func:`redact` to the final text of every log record, traceback included.

The functions never raise: a URL too broken to parse is still masked by pattern.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"

#: Query parameters (and ``key=value`` pairs in free text) whose values are secrets,
#: compared without case. Besides these, any name containing one of
#: :data:`SECRET_NAME_PARTS` is a secret.
SECRET_PARAMS = frozenset(
    {
        "password",
        "pass",
        "passwd",
        "pwd",
        "token",
        "secret",
        "access_token",
        "auth",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "signature",
        "credential",
        "sig",
        "apikey",
        "api_key",
        "aws_secret_access_key",
        "aws_session_token",
        "secret_key",
        "sessiontoken",
    }
)
SECRET_NAME_PARTS = ("password", "passwd", "secret", "token", "signature", "credential")

#: A known secret shorter than this is not replaced inside arbitrary text: masking every
#: "ab" in a log would destroy it without protecting anything worth the name.
MIN_SECRET_LEN = 4

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# scheme://userinfo@ — the userinfo ends at the last "@" before the path.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#]*)@")
_PAIR = re.compile(r"(?P<key>[A-Za-z][A-Za-z0-9_.\-]*)(?P<sep>=)(?P<value>[^&\s,;'\"<>]*)")
# 'X-Amz-Security-Token': b'...' and "Authorization": "..." as botocore prints headers.
_HEADER = re.compile(
    r"(?P<key>['\"]?(?:x-amz-security-token|x-amz-signature|authorization|x-api-key)['\"]?"
    r"\s*:\s*b?['\"])(?P<value>[^'\"]*)",
    re.IGNORECASE,
)
# botocore.auth at DEBUG: "Signature:\n<64 hex digits>".
_SIGNATURE_LINE = re.compile(r"(?P<key>\bSignature:\s*)(?P<value>[0-9a-fA-F]{40,})")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or ``key=value`` name carries a secret."""
    n = name.lower()
    return n in SECRET_PARAMS or any(part in n for part in SECRET_NAME_PARTS)


def _mask_pairs(text: str) -> str:
    return _PAIR.sub(
        lambda m: f"{m['key']}={MASK}" if is_secret_name(m["key"]) and m["value"] else m[0], text
    )


def redact_url(url: str) -> str:
    """``url`` with the userinfo password and secret query values replaced by ``***``.

    The user name is kept (``redis://user:***@host:6379/0``), as are the other query
    parameters. Text that is not a URL comes back with only its secret ``key=value`` pairs
    masked.
    """
    if not isinstance(url, str):
        url = str(url)
    m = _USERINFO.match(url)
    if m:
        userinfo = m["userinfo"]
        user, sep, password = userinfo.partition(":")
        if sep and password:
            url = f"{m['scheme']}{user}:{MASK}@" + url[m.end() :]
    head, qmark, rest = url.partition("?")
    if qmark:
        url = head + qmark + _mask_pairs(rest)
    return url


@functools.lru_cache(maxsize=256)
def _forms(secret: str) -> frozenset[str]:
    """A secret as written, percent-decoded and percent-encoded (as it appears in a URL)."""
    forms = {
        secret,
        unquote(secret),
        quote(secret, safe=""),
        quote(secret, safe="")
        .replace("-", "%2D")
        .replace(".", "%2E")
        .replace("_", "%5F")
        .replace("~", "%7E"),
    }
    return frozenset(f for f in forms if len(f) >= MIN_SECRET_LEN)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with URLs redacted (:func:`redact_url`), secret ``key=value`` pairs and
    signature headers masked, and every value of ``secrets`` replaced by ``***``."""
    if not isinstance(text, str):
        text = str(text)
    known: set[str] = set()
    for secret in secrets:
        if secret:
            known |= _forms(str(secret))
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL.sub(lambda m: redact_url(m[0]), text)
    text = _HEADER.sub(lambda m: m["key"] + MASK, text)
    text = _SIGNATURE_LINE.sub(lambda m: m["key"] + MASK, text)
    return _mask_pairs(text)


def url_secrets(url: str | None) -> list[str]:
    """The secrets written into a URL: the userinfo password and secret query values."""
    if not url:
        return []
    found = []
    m = _USERINFO.match(url)
    if m:
        _, sep, password = m["userinfo"].partition(":")
        if sep and password:
            found.append(password)
    _, qmark, rest = url.partition("?")
    if qmark:
        for pair in _PAIR.finditer(rest.partition("#")[0]):
            if is_secret_name(pair["key"]) and pair["value"]:
                found.append(pair["value"])
    return found


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's final message and traceback.

    Install it on handlers (a logger's filters do not see records propagated from child
    loggers such as botocore's). Secrets learnt later (after the INI is read) are added with
    :meth:`add`.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def add(self, secrets: Iterable[str | None]) -> None:
        with self._lock:
            merged = set(self._secrets) | {str(s) for s in secrets if s}
            self._secrets = tuple(sorted(merged))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return True
        record.msg = redact(message, self._secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True
