"""The lean store (s3s3.store.lean): same requests, answers and errors as botocore's.

moto checks no signatures, so every signature claim is proven against a real Ceph RGW
(``ceph`` fixture), with SigV4 and SigV2, over HTTP and HTTPS.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote_plus

import botocore.auth
import botocore.awsrequest
import botocore.config
import pytest

from s3s3 import config as s3s3_config
from s3s3 import retry
from s3s3.config import EndpointConfig
from s3s3.errors import (
    ConfigError,
    EndpointError,
    FatalEndpointError,
    ResponseError,
    SourceKeyMissing,
    TransientEndpointError,
)
from s3s3.listing import list_objects
from s3s3.model import Outcome
from s3s3.store import lean, signing
from s3s3.store.base import ContentHeaders, ObjectStream
from s3s3.store.boto import build_client
from s3s3.store.endpoint import LEAN_OPERATIONS, Endpoint
from s3s3.transfer import copy_object
from tests.conftest import endpoint_config, raw_client, unique_bucket
from tests.faultproxy import FaultProxy

ODD_KEYS = [
    "plain",
    "with space",
    "plus+sign",
    "per%25cent%",
    "ünïcödé/日本語/😀",
    "/leading",
    "repeated//slashes///x",
    "trailing/",
    "?query&amp=1#frag",
    "tilde~and*star'(paren)",
    "k" * 1024,
    ("ü" * 511) + "k",
]

#: Retries (by the owner of a call, as the bucket job and the listener retry) without waits.
FAST = retry.Policy(attempts=3, base_s=0.01, max_s=0.01)


def both_paths(ep: Endpoint) -> tuple[Endpoint, Endpoint]:
    """The endpoint through the lean client, and the same bucket through botocore only."""
    return ep, Endpoint(dataclasses.replace(ep.cfg, data_path="botocore"))


def read_all(obj: ObjectStream) -> bytes:
    with obj:
        return obj.body.read()


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    "value",
    [
        "obj%2F000001",
        "a+b",
        "a%2Bb+c",
        "%C3%BC%2F%E6%97%A5",
        "%E2%82",
        "x%zz%",
        "%",
        "",
        "plain",
        "ünï+%20x",
        "%f0%9f%98%80",
        "100%25+sure%21",
    ],
)
def test_unquote_key_is_unquote_plus(value):
    assert lean.unquote_key(value) == unquote_plus(value)


@pytest.mark.parametrize(
    "scheme, host, port, expected",
    [
        ("http", "127.0.0.1", 80, "127.0.0.1"),
        ("http", "127.0.0.1", 8080, "127.0.0.1:8080"),
        ("https", "S3.Example.COM", 443, "s3.example.com"),
        ("https", "::1", 8443, "[::1]:8443"),
        ("https", "h", None, "h"),
    ],
)
def test_host_header_is_the_one_botocore_signs(scheme, host, port, expected):
    assert lean.host_header(scheme, host, port) == expected


LISTING = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix>a%2Fb+c</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok+en%2F</NextContinuationToken>
<Contents><Key>a%2Fb+c%2B%C3%BC</Key><LastModified>2024-01-31T12:00:00.123Z</LastModified>
<ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size>
<StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>z</Key><LastModified>2024-02-01T00:00:00.000Z</LastModified>
<ETag>&quot;x-2&quot;</ETag><Size>0</Size></Contents>
<CommonPrefixes><Prefix>p%2F</Prefix></CommonPrefixes>
</ListBucketResult>"""


def answering_client(body: bytes):
    """A botocore client that gets ``body`` as the answer to any request, without a server."""
    client = build_client(
        EndpointConfig(
            name="x", bucket="b", endpoint_url="http://x.invalid", access_key="a", secret_key="s"
        )
    )

    def answer(request, **_):
        raw = type("Raw", (), {"stream": lambda self, **kw: iter([body])})()
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, raw)

    client.meta.events.register("before-send.s3", answer)
    return client


def botocore_parsed(op: str, body: bytes) -> dict:
    """What a botocore client returns for ``body``, without a server."""
    client = answering_client(body)
    call = client.list_objects_v2 if op == "ListObjectsV2" else client.list_objects
    return call(Bucket="b")


def test_listing_page_parses_and_decodes_like_botocore():
    ours = lean.parse_listing(LISTING, decode=("Delimiter", "Prefix", "StartAfter"))
    theirs = botocore_parsed("ListObjectsV2", LISTING)
    for field in ("IsTruncated", "KeyCount", "NextContinuationToken", "Prefix", "Name"):
        assert ours[field] == theirs[field], field
    assert len(ours["Contents"]) == len(theirs["Contents"]) == 2
    for mine, boto in zip(ours["Contents"], theirs["Contents"], strict=True):
        for field in ("Key", "Size", "ETag", "LastModified"):
            assert mine[field] == boto[field], field
    assert ours["Contents"][0]["Key"] == "a/b c+ü"


def test_listing_without_encoding_type_is_left_as_sent():
    page = LISTING.replace(b"<EncodingType>url</EncodingType>", b"")
    ours = lean.parse_listing(page)
    assert [c["Key"] for c in ours["Contents"]] == [
        c["Key"] for c in botocore_parsed("ListObjects", page)["Contents"]
    ]


def uploads_page(keys: list[str], *, encoded: bool = False) -> bytes:
    """A ListMultipartUploadsResult listing ``keys``: plain (XML-escaped), as both clients
    ask for it, or url-encoded and saying so, as AWS answers encoding-type=url."""

    def text(value: str) -> str:
        value = quote(value.encode("utf-8"), safe="/") if encoded else value
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    uploads = "".join(
        f"<Upload><Key>{text(key)}</Key><UploadId>2~id{i}+/=</UploadId>"
        f"<Initiator><ID>s3s3-user</ID><DisplayName>S3S3 User</DisplayName></Initiator>"
        f"<Owner><ID>owner</ID></Owner><StorageClass>STANDARD</StorageClass>"
        f"<Initiated>2024-01-31T12:00:0{i}.123Z</Initiated></Upload>"
        for i, key in enumerate(keys)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Bucket>b</Bucket><KeyMarker>{text('k m+é')}</KeyMarker>"
        f"<UploadIdMarker>2~m</UploadIdMarker><NextKeyMarker>{text(keys[-1])}"
        f"</NextKeyMarker><NextUploadIdMarker>2~id{len(keys) - 1}+/=</NextUploadIdMarker>"
        f"<Prefix>{text('p q/')}</Prefix><MaxUploads>2</MaxUploads>"
        + ("<EncodingType>url</EncodingType>" if encoded else "")
        + f"<IsTruncated>true</IsTruncated>{uploads}"
        f"</ListMultipartUploadsResult>"
    ).encode("utf-8")


def botocore_uploads(body: bytes) -> dict:
    """What a botocore client's list_multipart_uploads returns for ``body``."""
    out = answering_client(body).list_multipart_uploads(Bucket="b")
    out.pop("ResponseMetadata")
    return out


UPLOAD_KEYS = [
    "p q/with space",
    "p q/plus+sign",
    "p q/per%25cent%",
    "p q/ünï/日本/😀",
    "p q/a&b<c>d",
]


def test_upload_listing_parses_like_botocore():
    """Field for field what botocore parses; nothing url-decoded, as botocore decodes
    nothing in this answer (even one saying EncodingType=url)."""
    page = uploads_page(UPLOAD_KEYS)
    ours = lean.parse_uploads(page)
    assert ours == botocore_uploads(page)
    assert [u["Key"] for u in ours["Uploads"]] == UPLOAD_KEYS
    assert ours["Uploads"][0]["Initiated"] == datetime.datetime(
        2024, 1, 31, 12, 0, 0, 123000, tzinfo=datetime.timezone.utc
    )
    assert ours["Uploads"][0]["Initiator"] == {"ID": "s3s3-user", "DisplayName": "S3S3 User"}
    assert ours["NextKeyMarker"] == UPLOAD_KEYS[-1] and ours["KeyMarker"] == "k m+é"
    assert ours["MaxUploads"] == 2 and ours["IsTruncated"] is True
    encoded = uploads_page(["a%20b+c"], encoded=True)
    assert lean.parse_uploads(encoded) == botocore_uploads(encoded)
    assert lean.parse_uploads(encoded)["Uploads"][0]["Key"] == "a%2520b%2Bc"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<ListMultipartUploadsResult>",
        b"not xml",
        b"<ListMultipartUploadsResult><MaxUploads>many</MaxUploads></ListMultipartUploadsResult>",
        b"<R><Upload><Initiated>yesterday</Initiated></Upload></R>",
        b'<?xml version="1.0" encoding="nope"?><R/>',
    ],
)
def test_unreadable_upload_listing_is_a_response_error(body):
    with pytest.raises(ResponseError, match="unreadable upload listing"):
        lean.parse_uploads(body)


def test_an_unreadable_upload_listing_is_a_transient_xml_parse_error():
    """Sent by the lean store (one request, no botocore parser) and reported as an
    unreadable listing is."""
    body = b"<ListMultipartUploadsResult><IsTruncated>"

    def garbled(n):
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        ), True

    server = ScriptedServer(garbled)
    try:
        ep = scripted_endpoint(server, max_attempts=1)
        with pytest.raises(TransientEndpointError, match="unreadable upload listing") as err:
            list(ep.list_uploads("p"))
        assert err.value.code == "XMLParseError" and err.value.op == "ListMultipartUploads"
        assert server.requests == 1
    finally:
        server.close()


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_upload_listing_is_sent_as_botocore_sends_it_and_signed_alike(monkeypatch, style):
    """SigV4: the URL botocore sends, and, under a frozen clock, the headers botocore's
    signer gives that URL, byte for byte (``uploads`` has no value)."""
    cfg = EndpointConfig(
        name="x",
        bucket="my-bucket",
        addressing_style=style,
        max_attempts=1,
        endpoint_url="http://s3.example.test:9000",
        access_key="AKID",
        secret_key="se/cr+et",
    )
    client = build_client(cfg)
    ep = Endpoint(cfg, client=client)
    raw = ep.lean
    assert raw is not None and ep.transport("list_uploads") == "lean"
    params = {
        "Prefix": "p q/+é%",
        "MaxUploads": 2,
        "KeyMarker": "k m+%",
        "UploadIdMarker": "2~abc/+=",
    }
    theirs = signed_requests(client)
    client.list_multipart_uploads(Bucket="my-bucket", **params)
    client.list_multipart_uploads(Bucket="my-bucket", Prefix="", MaxUploads=1000)
    sent = []
    monkeypatch.setattr(
        raw._pool,
        "exchange",
        lambda method, target, headers, body, **_: (
            sent.append((method, raw._origin + target, headers)),
            (_ for _ in ()).throw(ConnectionRefusedError("not sending")),
        )[1],
    )
    moment = 1795627805.0  # 2026-11-25 17:30:05 UTC
    monkeypatch.setattr(signing.time, "time", lambda: moment)
    for call_params in (params, {"Prefix": "", "MaxUploads": 1000}):
        with pytest.raises(TransientEndpointError):
            raw.uploads_answer(
                call_params["Prefix"],
                page_size=call_params["MaxUploads"],
                key_marker=call_params.get("KeyMarker"),
                upload_id_marker=call_params.get("UploadIdMarker"),
            )
    assert len(sent) == len(theirs) == 2
    for (method, url, headers), (b_method, b_url, _) in zip(sent, theirs, strict=True):
        assert method == b_method == "GET"
        assert url.split("?")[0] == b_url.split("?")[0]
        query = url.partition("?")[2].split("&")
        assert query[0] == "uploads" and "encoding-type=url" not in query
        assert sorted(query) == sorted(b_url.partition("?")[2].split("&"))
        request = botocore.awsrequest.AWSRequest(
            method="GET", url=url, headers={"Host": headers["Host"]}
        )
        request.context["client_config"] = botocore.config.Config(
            s3={"payload_signing_enabled": False}
        )
        monkeypatch.setattr(
            botocore.auth,
            "get_current_datetime",
            lambda *a, **k: datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).replace(
                tzinfo=None
            ),
        )
        botocore.auth.S3SigV4Auth(
            ep.boto.credentials().get_frozen_credentials(), "s3", raw._region
        ).add_auth(request)
        expected = dict(request.headers.items())
        assert {k: v for k, v in headers.items() if k != "User-Agent"} == expected


def test_sigv2_upload_listing_is_left_to_botocore():
    """SigV2 signs the uploads sub-resource, s3s3.store.signing none: botocore sends it,
    decided when the endpoint is made, for this call only (the endpoint keeps its lean
    store for the others)."""
    cfg = EndpointConfig(
        name="x",
        bucket="b",
        signature_version="s3",
        endpoint_url="http://s3.example.test:9000",
        access_key="a",
        secret_key="s",
    )
    ep = Endpoint(cfg)
    assert ep.transport("list_uploads") == "botocore"
    assert ep.lean is not None and ep.transport("get") == ep.transport("list_page") == "lean"
    with pytest.raises(ValueError, match="SigV2 signs the uploads sub-resource"):
        ep.lean.uploads_answer("", page_size=10)


def signed_requests(client, monkeypatch=None) -> list:
    """Record (method, URL, SigV2 resource) of every request botocore's signers sign."""
    seen = []

    def record(request, **_):
        seen.append((request.method, request.url, getattr(request, "auth_path", None)))

    if monkeypatch is None:  # a botocore client: after the SigV2 path fix has run
        client.meta.events.register_last("before-sign.s3", record)

        def answer(request, **_):
            raw = type(
                "Raw",
                (),
                {
                    "stream": lambda self, **kw: iter(
                        [b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"]
                    )
                },
            )()
            return botocore.awsrequest.AWSResponse(request.url, 200, {}, raw)

        client.meta.events.register("before-send.s3", answer)
    else:  # the lean store: what it sends, and the SigV2 resource it signs; nothing is sent
        resources = []
        sign = client._signer.sign
        if isinstance(client._signer, signing.SigV2Signer):
            monkeypatch.setattr(
                client._signer,
                "sign",
                lambda creds, method, auth_path, *a, **k: (
                    resources.append(auth_path),
                    sign(creds, method, auth_path, *a, **k),
                )[1],
            )

        def exchange(method, target, headers, body, **_):
            seen.append((method, client._origin + target, resources.pop() if resources else None))
            raise ConnectionRefusedError("not sending")

        monkeypatch.setattr(client._pool, "exchange", exchange)
    return seen


@pytest.mark.parametrize("style", ["path", "virtual"])
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_requests_are_addressed_and_signed_over_what_botocore_signs(
    monkeypatch, style, signature_version
):
    """Method, URL and SigV2 resource of each call equal those botocore signs."""
    cfg = EndpointConfig(
        name="x",
        bucket="my-bucket",
        addressing_style=style,
        signature_version=signature_version,
        max_attempts=1,
        endpoint_url="http://s3.example.test:9000",
        access_key="a",
        secret_key="s",
    )
    client = build_client(cfg)
    raw = Endpoint(cfg, client=client).lean
    raw_v1 = Endpoint(dataclasses.replace(cfg, list_version=1), client=client).lean
    theirs = signed_requests(client)
    key = ODD_KEYS[8] + ODD_KEYS[4]
    client.head_object(Bucket="my-bucket", Key=key)
    client.put_object(Bucket="my-bucket", Key=key, Body=b"x")
    client.list_objects_v2(Bucket="my-bucket", Prefix="p q/+", MaxKeys=1000)
    client.list_objects(Bucket="my-bucket", Prefix="p", MaxKeys=10, Marker="m n")
    ours = signed_requests(raw, monkeypatch)
    ours_v1 = signed_requests(raw_v1, monkeypatch)
    for call in (
        lambda: raw.head(key),
        lambda: raw.put(key, b"x", size=1),
        lambda: raw.list_page("p q/+"),
        lambda: raw_v1.list_page("p", page_size=10, marker="m n"),
    ):
        with pytest.raises(TransientEndpointError):
            call()
    ours += ours_v1
    assert len(ours) == len(theirs) == 4
    for (method, url, auth_path), (b_method, b_url, b_auth_path) in zip(ours, theirs, strict=True):
        assert method == b_method
        assert url.split("?")[0] == b_url.split("?")[0]
        query, b_query = url.partition("?")[2], b_url.partition("?")[2]
        assert sorted(query.split("&")) == sorted(b_query.split("&"))
        if signature_version == "s3":
            assert auth_path == b_auth_path
    assert ours[0][1].startswith(
        "http://my-bucket.s3.example.test:9000/"
        if style == "virtual"
        else "http://s3.example.test:9000/my-bucket/"
    )


def test_data_path_is_read_and_checked(tmp_path):
    ini = tmp_path / "s3s3.ini"
    ini.write_text("[source]\nbucket_name = a\n\n[dest]\nbucket_name = b\ndata_path = botocore\n")
    settings = s3s3_config.load(ini, search_path=[])
    assert settings.source.data_path == "raw"
    assert settings.destinations[0].data_path == "botocore"
    ini.write_text("[source]\nbucket_name = a\n\n[dest]\nbucket_name = b\ndata_path = fast\n")
    with pytest.raises(ConfigError) as err:
        s3s3_config.load(ini, search_path=[])
    assert str(err.value) == (
        "value 'fast' for 'data_path' is not one of botocore, raw in "
        f"section 'dest' (file: '{ini}')"
    )


def test_no_secret_in_reprs():
    cfg = EndpointConfig(
        name="x",
        bucket="b",
        endpoint_url="http://127.0.0.1:9",
        access_key="AKIDVISIBLE",
        secret_key="very-secret-value",
    )
    raw = Endpoint(cfg).lean
    assert raw is not None
    for text in (repr(raw), repr(raw._pool), repr(Endpoint(cfg))):
        assert "very-secret-value" not in text


# ------------------------------------------------------------------ against moto


def test_object_calls_answer_the_fields_botocore_answers(moto_servers, make_bucket):
    """The lean store's GET says what the boto3 store's says, and what botocore's own
    answer says: the same ObjectInfo and the same headers to carry."""
    ep, boto = both_paths(make_bucket(moto_servers[0]))
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    boto.boto.call(
        "PutObject",
        "img",
        Body=b"\x89PNG",
        ContentType="image/png",
        CacheControl="max-age=60",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="cat.png"',
        ContentLanguage="en",
        Expires=expires,
        Metadata={"owner": "alice", "x-long": "v" * 500},
    )
    assert ep.transport("get") == "lean" and boto.transport("get") == "botocore"
    fast, slow = ep.get("img"), boto.get("img")
    theirs = boto.boto.call("GetObject", "img")  # botocore's own answer
    assert read_all(fast) == read_all(slow) == theirs["Body"].read() == b"\x89PNG"
    assert fast.info == slow.info
    assert fast.headers == slow.headers
    assert fast.info.size == theirs["ContentLength"]
    assert fast.info.etag == theirs["ETag"].strip('"')
    assert fast.info.last_modified == theirs["LastModified"]
    assert fast.headers.metadata == theirs["Metadata"]
    for header, field in (
        ("Content-Type", "ContentType"),
        ("Content-Encoding", "ContentEncoding"),
        ("Content-Disposition", "ContentDisposition"),
        ("Content-Language", "ContentLanguage"),
        ("Cache-Control", "CacheControl"),
        ("Expires", "ExpiresString"),
    ):
        assert fast.headers.fields[header] == theirs[field], field
    head = ep.head("img")
    assert head is not None and head.size == 4 and head == fast.info
    assert ep.head("img") == boto.head("img")


def test_put_sends_body_md5_metadata_and_carried_headers(moto_servers, make_bucket):
    ep, boto = both_paths(make_bucket(moto_servers[0]))
    data = b"payload" * 100
    assert ep.transport("put") == "lean"
    etag = ep.put(
        "k",
        data,
        size=len(data),
        md5=hashlib.md5(data).hexdigest(),
        headers=ContentHeaders(
            {
                "Content-Type": "text/plain",
                "Cache-Control": "no-cache",
                "Expires": "Wed, 02 Jan 2030 03:04:05 GMT",
                "x-amz-meta-owner": "bob",
            }
        ),
    )
    assert etag == hashlib.md5(data).hexdigest()
    head = boto.boto.call("HeadObject", "k")
    assert head["ContentType"] == "text/plain" and head["CacheControl"] == "no-cache"
    assert head["Metadata"] == {"owner": "bob"}
    assert "2030" in str(head.get("ExpiresString") or head["Expires"])
    assert read_all(boto.get("k")) == data


def test_other_calls_go_to_botocore(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0])
    sent = []
    ep.client.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(request.method)
    )
    ep.put("k", b"x", size=1)
    ep.get("k").close()
    assert ep.head("k") is not None and [o.key for o in list_objects(ep)] == ["k"]
    assert sent == []
    ep.put("k2", io.BytesIO(b"x"), size=1)  # a stream: botocore sends it (100-continue)
    ep.delete("k2")
    assert sent == ["PUT", "DELETE"]


def test_data_path_botocore_never_builds_the_lean_client(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0], data_path="botocore")
    ep.put("k", b"x", size=1)
    assert ep.lean is None and ep.head("k").size == 1
    assert {ep.transport(op) for op in LEAN_OPERATIONS} == {"botocore"}


def test_endpoint_behind_a_proxy_stays_on_botocore(moto_servers, make_bucket, monkeypatch):
    ep = make_bucket(moto_servers[0])
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    assert ep.lean is None


def test_missing_key_and_missing_bucket_errors(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0])
    with pytest.raises(SourceKeyMissing, match=r"no such key: NoSuchKey \(HTTP 404\)") as err:
        ep.get("nope")
    assert (err.value.op, err.value.key, err.value.status) == ("GetObject", "nope", 404)
    assert ep.head("nope") is None
    gone = Endpoint(endpoint_config(moto_servers[0], unique_bucket("none"), name="dest"))
    with pytest.raises(FatalEndpointError, match="bucket does not exist: NoSuchBucket"):
        gone.list_page("")
    with pytest.raises(FatalEndpointError, match="NoSuchBucket"):
        gone.put("k", b"x", size=1)


def test_5xx_is_retried_by_the_owner_then_given_up_with_the_last_error(moto_servers, make_bucket):
    """Each lean call is one request; its owner retries it (s3s3.retry) up to the endpoint's
    max_attempts, and raises the last error. The listing owns its pages."""
    ep = make_bucket(moto_servers[0])
    ep.put("k", b"data", size=4)
    with FaultProxy(ep.cfg.endpoint_url) as proxy:
        flaky = Endpoint(
            endpoint_config(
                moto_servers[0], ep.bucket, name="p", max_attempts=3, endpoint_url=proxy.url
            )
        )
        proxy.fail_next = 2
        assert retry.call(lambda: read_all(flaky.get("k")), policy=FAST, what="get") == b"data"
        proxy.fail_next = 2
        # A bytes body is resent.
        retry.call(lambda: flaky.put("k2", b"again", size=5), policy=FAST, what="put")
        proxy.fail_next = 2
        assert [o.key for o in list_objects(flaky)] == ["k", "k2"]  # its max_attempts = 3
        assert proxy.counts == {"GET": 6, "PUT": 3}
        proxy.fail_next = 10
        with pytest.raises(TransientEndpointError) as err:
            retry.call(lambda: flaky.head("k"), policy=FAST, what="head")
        assert err.value.status == 503 and err.value.key == "k"
        assert "HeadObject s3://" in str(err.value) and "[p]" in str(err.value)
        assert proxy.counts["HEAD"] == 3


def test_connection_refused_is_transient(moto_servers):
    from servers._common import free_port

    ep = Endpoint(
        endpoint_config(
            moto_servers[0],
            "b",
            name="dest",
            max_attempts=2,
            endpoint_url=f"http://127.0.0.1:{free_port()}",
        )
    )
    with pytest.raises(TransientEndpointError, match="ConnectionRefusedError") as err:
        ep.head("k")
    assert err.value.code == "connection"


def test_streamed_body_closed_early_frees_its_connection(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0])
    data = bytes(range(256)) * 12_000
    ep.boto.put("big", data, size=len(data))
    resp = ep.get("big")
    assert resp.body.read(1000) == data[:1000]
    resp.close()  # 3 MB left unread: the connection must not be reused
    assert read_all(ep.get("big")) == data
    chunks, resp = [], ep.get("big")
    while chunk := resp.body.read(100_000):
        chunks.append(chunk)
    resp.close()
    assert b"".join(chunks) == data


@pytest.mark.slow
def test_listing_over_1000_keys_matches_botocore_v1_and_v2(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0])
    keys = [f"k/{i:05d}" for i in range(1010)] + ODD_KEYS
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: ep.put(k, k.encode(), size=len(k.encode())), keys))
    for version in (1, 2):
        fast, slow = both_paths(Endpoint(dataclasses.replace(ep.cfg, list_version=version)))
        assert list(list_objects(fast)) == list(list_objects(slow))
        assert sorted(o.key for o in list_objects(fast)) == sorted(keys)
        assert list(list_objects(fast, "k/0100")) == list(list_objects(slow, "k/0100"))


def test_copy_object_goes_through_the_lean_client(src_dst):
    src, dst = src_dst
    for key in ODD_KEYS:
        src.boto.call("PutObject", key, Body=key.encode(), Metadata={"k": "v"})
    for key in ODD_KEYS:
        assert copy_object(src, dst, key).outcome is Outcome.COPIED
        assert copy_object(src, dst, key).outcome is Outcome.SKIPPED
    assert src.lean is not None and dst.lean is not None
    assert sorted(o.key for o in list_objects(dst)) == sorted(ODD_KEYS)
    assert dst.boto.call("HeadObject", ODD_KEYS[4])["Metadata"] == {"k": "v"}


# ------------------------------------------------------------------ a scripted server


class ScriptedServer:
    """A tiny HTTP server answering each request with ``reply(n)`` (n counts from 1)."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.requests = 0
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                self.requests += 1
                answer, keep = self.reply(self.requests)
                if answer is None:  # never answer
                    threading.Event().wait(5)
                    return
                conn.sendall(answer)
                if not keep:
                    return

    def close(self) -> None:
        self.stopping = True
        self.sock.close()


def ok_head(n):
    return (
        b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "5d41402abc4b2a76b9719d911017c592"\r\n\r\n'
    ), False  # closes every connection after answering, unannounced


def scripted_endpoint(server: ScriptedServer, **overrides) -> Endpoint:
    return Endpoint(
        EndpointConfig(
            name="s",
            bucket="b",
            endpoint_url=server.url,
            access_key="a",
            secret_key="s",
            **overrides,
        )
    )


def test_a_kept_connection_the_server_closed_is_replaced():
    server = ScriptedServer(ok_head)
    try:
        ep = scripted_endpoint(server, max_attempts=1)
        for _ in range(3):
            assert ep.head("k").etag == "5d41402abc4b2a76b9719d911017c592"
        assert server.connections == 3
    finally:
        server.close()


def test_a_closed_connection_found_only_on_use_is_replaced_once(monkeypatch):
    monkeypatch.setattr(lean, "_is_dropped", lambda sock: False)
    server = ScriptedServer(ok_head)
    try:
        ep = scripted_endpoint(server, max_attempts=1)
        for _ in range(3):
            assert ep.head("k").size == 0
    finally:
        server.close()


def test_read_timeout_is_transient():
    server = ScriptedServer(lambda n: (None, False))
    try:
        ep = scripted_endpoint(server, max_attempts=1, read_timeout_s=0.3)
        with pytest.raises(TransientEndpointError, match="timed out") as err:
            ep.get("k")
        assert err.value.code == "connection"
    finally:
        server.close()


def test_short_body_is_transient():
    def short(n):
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False

    server = ScriptedServer(short)
    try:
        ep = scripted_endpoint(server, max_attempts=1)
        resp = ep.get("k")
        with pytest.raises(TransientEndpointError):
            resp.body.read()
        resp = ep.get("k")
        with pytest.raises(TransientEndpointError, match="7 bytes of the body unread"):
            while resp.body.read(4):
                pass
    finally:
        server.close()


def test_a_redirect_hands_the_endpoint_to_botocore():
    """An AWS bucket in another region answers 301: botocore's redirect handling takes over
    (here the server answers botocore's retry)."""
    body = (
        b"<Error><Code>PermanentRedirect</Code><Message>elsewhere</Message>"
        b"<Endpoint>b.s3.example</Endpoint></Error>"
    )

    def redirect_once(n):
        if n == 1:
            return (
                b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            ), True
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True

    server = ScriptedServer(redirect_once)
    try:
        ep = scripted_endpoint(server, max_attempts=1)
        assert read_all(ep.get("k")) == b"hello"
        assert ep.lean is None  # botocore from now on
        assert ep.transport("get") == "botocore"
        assert server.requests == 2
    finally:
        server.close()


# ------------------------------------------------------------------ against real Ceph RGW


@pytest.fixture(params=["s3v4", "s3"])
def ceph_pair(request, ceph):
    """A fresh bucket on Ceph: (lean endpoint, botocore-only endpoint), per signature."""
    bucket = unique_bucket("raw")
    raw_client(ceph).create_bucket(Bucket=bucket)
    ep = Endpoint(endpoint_config(ceph, bucket, name="ceph", signature_version=request.param))
    return both_paths(ep)


@pytest.mark.interop
def test_odd_keys_and_metadata_signed_and_read_back_on_ceph(ceph_pair):
    ep, boto = ceph_pair
    headers = ContentHeaders(
        {
            "Content-Type": "image/png",
            "Cache-Control": "max-age=60",
            "x-amz-meta-owner": "alice",
            "x-amz-meta-n": "1",
        }
    )
    for key in ODD_KEYS:
        data = key.encode() * 3
        ep.put(key, data, size=len(data), md5=hashlib.md5(data).hexdigest(), headers=headers)
        got = ep.get(key)
        assert read_all(got) == data, key
        assert got.headers.metadata == {"owner": "alice", "n": "1"}
        assert got.headers.fields["Content-Type"] == "image/png"
        assert got.headers.fields["Cache-Control"] == "max-age=60"
        assert got.headers == boto.get(key).headers
        assert ep.head(key) == boto.head(key)
    assert list(list_objects(ep)) == list(list_objects(boto))
    assert sorted(o.key for o in list_objects(ep)) == sorted(ODD_KEYS)


@pytest.mark.interop
def test_wrong_content_md5_is_refused_on_ceph(ceph_pair):
    ep, _ = ceph_pair
    with pytest.raises(EndpointError, match="BadDigest"):
        ep.put("k", b"x", size=1, md5=hashlib.md5(b"y").hexdigest())


@pytest.mark.interop
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_bad_secret_is_fatal_on_ceph(ceph, signature_version):
    bucket = unique_bucket("cred")
    raw_client(ceph).create_bucket(Bucket=bucket)
    raw_client(ceph).put_object(Bucket=bucket, Key="k", Body=b"x")
    ep = Endpoint(
        endpoint_config(
            ceph,
            bucket,
            name="ceph",
            secret_key="wrong-secret",
            signature_version=signature_version,
        )
    )
    for call in (lambda: ep.get("k"), lambda: ep.put("k", b"x", size=1)):
        with pytest.raises(FatalEndpointError, match="SignatureDoesNotMatch") as err:
            call()
        assert "wrong-secret" not in str(err.value)
    with pytest.raises(FatalEndpointError, match="HTTP 403"):
        ep.head("k")
    with pytest.raises(FatalEndpointError, match="SignatureDoesNotMatch"):
        list(list_objects(ep))


@pytest.mark.interop
@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_https_with_ca_bundle_on_ceph(ceph, signature_version):
    bucket = unique_bucket("tls")
    raw_client(ceph).create_bucket(Bucket=bucket)
    ep = Endpoint(
        endpoint_config(
            ceph,
            bucket,
            name="ceph",
            endpoint_url=ceph["https_url"],
            ca_bundle=ceph["ca_bundle"],
            signature_version=signature_version,
        )
    )
    ep.put("a b+c", b"secure", size=6, headers=ContentHeaders({"x-amz-meta-m": "1"}))
    assert read_all(ep.get("a b+c")) == b"secure"
    assert [o.key for o in list_objects(ep)] == ["a b+c"]
    assert ep.lean is not None and ep.lean.base_url.startswith("https://")


@pytest.mark.interop
def test_tls_without_the_ca_is_fatal_on_ceph(ceph):
    ep = Endpoint(
        endpoint_config(ceph, "b", name="ceph", endpoint_url=ceph["https_url"], max_attempts=1)
    )
    with pytest.raises(FatalEndpointError, match="TLS failed"):
        ep.head("k")


@pytest.mark.interop
def test_listing_over_1000_odd_keys_matches_botocore_on_ceph(ceph_pair):
    ep, _ = ceph_pair
    keys = [
        f"d{i % 3}/{'ü' if i % 5 == 0 else ''}{i:05d}{' +%' if i % 7 == 0 else ''}"
        for i in range(1100)
    ] + ODD_KEYS
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: ep.put(k, b"x", size=1), keys))
    for version in (1, 2):
        fast, slow = both_paths(Endpoint(dataclasses.replace(ep.cfg, list_version=version)))
        listed = list(list_objects(fast))
        assert listed == list(list_objects(slow))
        assert sorted(o.key for o in listed) == sorted(keys)
        assert list(list_objects(fast, "d1/")) == list(list_objects(slow, "d1/"))
