"""s3s3.store.signing produces, header for header and byte for byte, what botocore's signers produce."""

from __future__ import annotations

import calendar
import datetime
from urllib.parse import quote

import botocore.auth
import botocore.config
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.utils import percent_encode

from s3s3.store import signing

PLAIN = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
TEMPORARY = ReadOnlyCredentials("ASIAEXAMPLE", "secret/with+odd=chars", "FQoGZXIvYXdzE+/token==")

KEYS = [
    "plain.txt",
    "dir/sub dir/file name.txt",
    "unicodé/ключ/键",
    "a+b%20c&d=e?f#g",
    "//leading/and//double",
    "~tilde_-.*'()!$,;:@",
    "x" * 1024,
    " trailing space ",
]

QUERIES = [
    "",
    "list-type=2&encoding-type=url&max-keys=1000&prefix=",
    "list-type=2&encoding-type=url&max-keys=1000&prefix="
    + percent_encode("p q/+é")
    + "&continuation-token="
    + percent_encode("1/AbC+=="),
    "encoding-type=url&max-keys=10&prefix=p&marker=" + percent_encode("m n%"),
]

HEADER_SETS = [
    {},
    {"Content-Length": "4096", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="},
    {
        "Content-Length": "0",
        "Content-Type": "image/png",
        "Cache-Control": "max-age=60",
        "x-amz-meta-Owner": "alice",
        "x-amz-meta-spaced": "  two   spaces  here ",
        "x-amz-meta-s3s3-md5": "0cc175b9c0f1b6a831c399e269772661",
        "Expires": "Thu, 01 Dec 1994 16:00:00 GMT",
        "User-Agent": "not signed",
        "Expect": "100-continue",
    },
]

MOMENTS = [
    datetime.datetime(2026, 11, 25, 17, 30, 5),
    datetime.datetime(2026, 11, 25, 23, 59, 59),  # then the next day: a new signing key
    datetime.datetime(2026, 11, 26, 0, 0, 1),
]


def _epoch(moment: datetime.datetime) -> float:
    return calendar.timegm(moment.timetuple())


def botocore_v4(monkeypatch, creds, region, method, url, headers, moment) -> dict:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: moment)
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["client_config"] = botocore.config.Config(s3={"payload_signing_enabled": False})
    botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(request)
    return dict(request.headers.items())


def botocore_v2(monkeypatch, creds, method, url, auth_path, headers, moment) -> dict:
    date = botocore.auth.formatdate(_epoch(moment), usegmt=True)
    monkeypatch.setattr(botocore.auth.HmacV1Auth, "_get_date", lambda self: date)
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.auth_path = auth_path
    botocore.auth.HmacV1Auth(creds).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("creds", [PLAIN, TEMPORARY], ids=["keys", "session-token"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1"])
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_sigv4_equals_botocore(monkeypatch, creds, region, style):
    signer = signing.SigV4Signer(region)  # one signer throughout: its caches are exercised
    host = "my-bucket.s3.example.test:9000" if style == "virtual" else "127.0.0.1:8080"
    prefix = "/" if style == "virtual" else "/my-bucket/"
    compared = 0
    for moment in MOMENTS:
        for key in KEYS:
            for method, headers in (
                ("GET", HEADER_SETS[0]),
                ("HEAD", HEADER_SETS[0]),
                ("PUT", HEADER_SETS[1]),
                ("PUT", HEADER_SETS[2]),
            ):
                path = prefix + quote(key.encode("utf-8"), safe="/~")
                sent = {**headers, "Host": host}
                ours = signer.sign(creds, method, path, "", sent, now=_epoch(moment))
                theirs = botocore_v4(
                    monkeypatch, creds, region, method, f"http://{host}{path}", sent, moment
                )
                assert ours == theirs, (method, key)
                compared += 1
        for query in QUERIES:
            path = prefix.rstrip("/") or "/"
            sent = {"Host": host}
            ours = signer.sign(creds, "GET", path, query, sent, now=_epoch(moment))
            url = f"http://{host}{path}" + (f"?{query}" if query else "")
            assert ours == botocore_v4(monkeypatch, creds, region, "GET", url, sent, moment)
            compared += 1
    assert compared == len(MOMENTS) * (len(KEYS) * 4 + len(QUERIES))


#: ListMultipartUploads queries as the lean client sends them: ``uploads`` bare, first.
UPLOADS_QUERIES = [
    "uploads&prefix=&max-uploads=1000",
    "uploads&prefix="
    + percent_encode("p q/+é%")
    + "&max-uploads=2"
    + "&key-marker="
    + percent_encode("k m+%/ü")
    + "&upload-id-marker="
    + percent_encode("2~abc/+=="),
    "uploads",
]


@pytest.mark.parametrize("creds", [PLAIN, TEMPORARY], ids=["keys", "session-token"])
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_sigv4_of_an_upload_listing_equals_botocore(monkeypatch, creds, style):
    """``uploads`` has no value: botocore's canonical query makes it ``uploads=`` and sorts
    it among the others; so does ours."""
    signer = signing.SigV4Signer("eu-central-1")
    host = "my-bucket.s3.example.test:9000" if style == "virtual" else "127.0.0.1:8080"
    path = "/" if style == "virtual" else "/my-bucket"
    for moment in MOMENTS:
        for query in UPLOADS_QUERIES:
            sent = {"Host": host}
            ours = signer.sign(creds, "GET", path, query, sent, now=_epoch(moment))
            theirs = botocore_v4(
                monkeypatch,
                creds,
                "eu-central-1",
                "GET",
                f"http://{host}{path}?{query}",
                sent,
                moment,
            )
            assert ours == theirs, query
    assert signing._canonical_query(UPLOADS_QUERIES[0]) == "max-uploads=1000&prefix=&uploads="


@pytest.mark.parametrize("creds", [PLAIN, TEMPORARY], ids=["keys", "session-token"])
def test_sigv2_equals_botocore(monkeypatch, creds):
    signer = signing.SigV2Signer()
    for moment in MOMENTS:
        for key in KEYS:
            quoted = quote(key.encode("utf-8"), safe="/~")
            for style, host, path in (
                ("path", "127.0.0.1:8080", "/my-bucket/" + quoted),
                ("virtual", "my-bucket.s3.example.test", "/" + quoted),
            ):
                for method, headers in (
                    ("GET", HEADER_SETS[0]),
                    ("PUT", HEADER_SETS[1]),
                    ("PUT", HEADER_SETS[2]),
                ):
                    auth_path = "/my-bucket/" + quoted
                    sent = {**headers, "Host": host}
                    ours = signer.sign(creds, method, auth_path, sent, now=_epoch(moment))
                    theirs = botocore_v2(
                        monkeypatch, creds, method, f"http://{host}{path}", auth_path, sent, moment
                    )
                    assert ours == theirs, (style, method, key)
        for query in QUERIES:  # listings: none of these parameters is a signed sub-resource
            sent = {"Host": "127.0.0.1:8080"}
            ours = signer.sign(creds, "GET", "/my-bucket", sent, now=_epoch(moment))
            url = "http://127.0.0.1:8080/my-bucket" + (f"?{query}" if query else "")
            assert ours == botocore_v2(monkeypatch, creds, "GET", url, "/my-bucket", sent, moment)


def test_a_retry_replaces_the_previous_signature():
    signer = signing.SigV4Signer("us-east-1")
    first = signer.sign(PLAIN, "GET", "/b/k", "", {"Host": "h"}, now=_epoch(MOMENTS[0]))
    again = signer.sign(PLAIN, "GET", "/b/k", "", first, now=_epoch(MOMENTS[1]))
    fresh = signer.sign(PLAIN, "GET", "/b/k", "", {"Host": "h"}, now=_epoch(MOMENTS[1]))
    assert again == fresh and again["Authorization"] != first["Authorization"]
    v2 = signing.SigV2Signer()
    first = v2.sign(TEMPORARY, "GET", "/b/k", {"Host": "h"}, now=_epoch(MOMENTS[0]))
    assert v2.sign(TEMPORARY, "GET", "/b/k", first, now=_epoch(MOMENTS[2])) == v2.sign(
        TEMPORARY, "GET", "/b/k", {"Host": "h"}, now=_epoch(MOMENTS[2])
    )


def test_credentials_changing_between_requests_are_used(monkeypatch):
    """Refreshed credentials (a new secret the same day) get a new signing key."""
    signer = signing.SigV4Signer("us-east-1")
    moment = MOMENTS[0]
    for creds in (PLAIN, TEMPORARY, PLAIN):
        ours = signer.sign(creds, "GET", "/b/k", "", {"Host": "h"}, now=_epoch(moment))
        assert ours == botocore_v4(
            monkeypatch, creds, "us-east-1", "GET", "http://h/b/k", {"Host": "h"}, moment
        )


def test_no_secret_in_reprs():
    signer = signing.SigV4Signer("us-east-1")
    signer.sign(PLAIN, "GET", "/b/k", "", {"Host": "h"})
    assert "wJalr" not in repr(signer) and "AKID" not in repr(signer)
