"""The boto3 store: the compatibility settings and handlers, one try per call, the error
mapping."""

from __future__ import annotations

import base64
import hashlib

import pytest

from s3s3 import retry
from s3s3.config import EndpointConfig
from s3s3.errors import FatalEndpointError, TransientEndpointError
from s3s3.model import etag_is_md5
from s3s3.store.boto import build_client, client_config
from s3s3.store.endpoint import Endpoint
from tests.conftest import endpoint_config, raw_client, unique_bucket
from tests.faultproxy import FaultProxy


def test_client_config_avoids_what_ceph_and_swift_refuse():
    cfg = client_config(EndpointConfig(name="d", bucket="b", endpoint_url="https://x"))
    assert cfg.request_checksum_calculation == "when_required"
    assert cfg.response_checksum_validation == "when_required"
    assert cfg.s3 == {"addressing_style": "path", "payload_signing_enabled": False}
    # botocore tries once: s3s3.retry is the one retry level.
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 1}
    assert cfg.signature_version == "s3v4"


@pytest.mark.parametrize(
    "etag, is_md5",
    [
        ("5d41402abc4b2a76b9719d911017c592", True),
        ("73d783af7856e979572f826f3564e68a-3", False),
        ("", False),
        (None, False),
        ("z" * 32, False),
    ],
)
def test_etag_is_md5(etag, is_md5):
    assert etag_is_md5(etag) is is_md5


def test_delete_objects_carries_content_md5(moto_servers, make_bucket):
    ep = make_bucket(moto_servers[0])
    for k in ("a", "b"):
        ep.put(k, b"x", size=1)
    seen = {}

    def capture(request, **_):
        seen["md5"] = request.headers.get("Content-MD5")
        seen["body"] = request.body

    ep.client.meta.events.register("before-send.s3.DeleteObjects", capture)
    assert ep.delete_many(["a", "b"]) == {}
    body = seen["body"] if isinstance(seen["body"], bytes) else seen["body"].encode()
    md5 = seen["md5"].decode() if isinstance(seen["md5"], bytes) else seen["md5"]
    assert md5 == base64.b64encode(hashlib.md5(body).digest()).decode()
    assert ep.boto.call("ListObjectsV2").get("KeyCount") == 0


FAST = retry.Policy(attempts=5, base_s=0.01, max_s=0.01)


@pytest.mark.parametrize("data_path", ["raw", "botocore"])
def test_throttling_and_5xx_are_retried_by_the_owner_once(moto_servers, make_bucket, data_path):
    """A store call sends one request; its owner retries it (s3s3.retry), on either data
    path: botocore's own retries are off."""
    ep = make_bucket(moto_servers[0])
    with FaultProxy(ep.cfg.endpoint_url) as proxy:
        proxied = Endpoint(
            endpoint_config(
                moto_servers[0], ep.bucket, name="p", endpoint_url=proxy.url, data_path=data_path
            )
        )
        proxy.fail_next = 2
        retry.call(lambda: proxied.put("k", b"data", size=4), policy=FAST, what="put k")
        assert sum(proxy.counts.values()) == 3
        proxy.fail_next = 10
        with pytest.raises(TransientEndpointError) as err:
            proxied.get("k")
        assert err.value.status == 503 and err.value.key == "k"
        assert "GetObject s3://" in str(err.value) and "[p]" in str(err.value)
        assert sum(proxy.counts.values()) == 4  # one try, one request
        with pytest.raises(TransientEndpointError):
            proxied.boto.put("k", b"data", size=4)
        assert sum(proxy.counts.values()) == 5


def test_missing_bucket_is_fatal(moto_servers):
    ep = Endpoint(endpoint_config(moto_servers[0], unique_bucket("none"), name="dest"))
    with pytest.raises(FatalEndpointError, match="bucket does not exist"):
        ep.check_bucket()
    with pytest.raises(FatalEndpointError, match="NoSuchBucket"):
        ep.boto.put("k", b"x", size=1)


def test_connection_refused_is_transient(moto_servers):
    from servers._common import free_port

    ep = Endpoint(
        endpoint_config(
            moto_servers[0],
            "b",
            name="dest",
            max_attempts=1,
            endpoint_url=f"http://127.0.0.1:{free_port()}",
        )
    )
    with pytest.raises(TransientEndpointError):
        ep.head("k")


# ---------------------------------------------------------------- against real Ceph RGW


@pytest.mark.interop
@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_bucket_and_object_calls_on_ceph(ceph, signature_version):
    bucket = unique_bucket("sig")
    raw_client(ceph).create_bucket(Bucket=bucket)
    ep = Endpoint(endpoint_config(ceph, bucket, name="ceph", signature_version=signature_version))
    ep.check_bucket()
    ep.boto.put("dir/k 1", b"x", size=1)
    assert [o["Key"] for o in ep.boto.call("ListObjectsV2")["Contents"]] == ["dir/k 1"]
    assert ep.delete_many(["dir/k 1"]) == {}
    assert ep.boto.call("ListObjects").get("Contents") is None


@pytest.mark.interop
def test_sigv2_bucket_call_fails_on_ceph_without_the_path_fix(ceph):
    """The regression the before-sign handler guards: botocore signs /bucket/ for /bucket."""
    bucket = unique_bucket("sig")
    raw_client(ceph).create_bucket(Bucket=bucket)
    cfg = endpoint_config(ceph, bucket, name="ceph", signature_version="s3")
    client = build_client(cfg)
    client.meta.events.unregister("before-sign.s3", _find_trim_handler())
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        client.list_objects(Bucket=bucket)


def _find_trim_handler():
    from s3s3.store import boto

    return boto._sigv2_trim_auth_path


@pytest.mark.interop
def test_https_with_ca_bundle_and_uploads_on_ceph(ceph):
    bucket = unique_bucket("tls")
    raw_client(ceph).create_bucket(Bucket=bucket)
    ep = Endpoint(
        endpoint_config(
            ceph, bucket, name="ceph", endpoint_url=ceph["https_url"], ca_bundle=ceph["ca_bundle"]
        )
    )
    # A streamed (non-seekable) body over HTTPS: the aws-chunked default would be refused.
    import io

    class OneWay(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def read(self, n=-1):
            return self._data.read(n)

    body = OneWay(b"y" * 100_000)
    assert ep.transport("put") == "lean"  # of a bytes body; a stream goes to botocore
    ep.put("streamed", body, size=100_000)
    assert ep.head("streamed").size == 100_000


@pytest.mark.interop
def test_bad_credentials_are_fatal_on_ceph(ceph):
    bucket = unique_bucket("cred")
    raw_client(ceph).create_bucket(Bucket=bucket)
    ep = Endpoint(endpoint_config(ceph, bucket, name="ceph", secret_key="wrong-secret"))
    with pytest.raises(FatalEndpointError) as err:
        ep.check_bucket()
    assert "wrong-secret" not in str(err.value)
    with pytest.raises(FatalEndpointError, match="SignatureDoesNotMatch"):
        ep.boto.put("k", b"x", size=1)


@pytest.mark.interop
def test_tls_without_the_ca_is_fatal(ceph):
    ep = Endpoint(
        endpoint_config(ceph, "b", name="ceph", endpoint_url=ceph["https_url"], max_attempts=1)
    )
    with pytest.raises(FatalEndpointError, match="TLS"):
        ep.check_bucket()


@pytest.mark.parametrize(
    "code, status, kind",
    [
        ("SlowDown", 503, TransientEndpointError),
        ("InternalError", 500, TransientEndpointError),
        ("", 502, TransientEndpointError),
        ("NotImplemented", 501, FatalEndpointError),
        ("AccessDenied", 403, FatalEndpointError),
        ("NoSuchBucket", 404, FatalEndpointError),
    ],
)
def test_error_table(code, status, kind):
    from s3s3.store.s3errors import classify_error

    cfg = EndpointConfig(name="dest", bucket="b")
    err = classify_error(code, status, "m", op="PutObject", cfg=cfg, key="k")
    assert type(err) is kind
    assert str(err).startswith("PutObject s3://b/k on [dest] failed: ")
