"""TLS trust as boto3 users expect it: ``AWS_CA_BUNDLE`` (and the AWS profile's ``ca_bundle``,
``REQUESTS_CA_BUNDLE``) on both data paths, with the INI's own keys first.

botocore's order (``Session.create_client``, ``EndpointCreator._get_verify_value``): an
explicit ``verify``, else the ``ca_bundle`` config variable (``AWS_CA_BUNDLE``, then the
profile), else ``REQUESTS_CA_BUNDLE``, else its own bundle. The copies run against the real
Ceph RGW HTTPS endpoint, whose CA is made when it starts and is in no system store.
"""

from __future__ import annotations

import botocore.session
import pytest
from conftest import endpoint_config, raw_client, unique_bucket

from s3s3.errors import ConfigError, FatalEndpointError
from s3s3.model import Outcome
from s3s3.store.boto import tls_verify
from s3s3.store.endpoint import Endpoint
from s3s3.transfer import copy_object

ENV = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_PROFILE")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    # No profile of the machine's own may decide the outcome.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    return monkeypatch


def pem(tmp_path, name: str) -> str:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def cfg(**kw):
    return endpoint_config(
        {
            "endpoint_url": "https://s3.example",
            "region": "us-east-1",
            "access_key": "a",
            "secret_key": "b",
        },
        "bkt",
        name="dest1",
        **kw,
    )


def test_precedence_is_botocores_with_the_ini_keys_first(clean_env, tmp_path):
    ini, aws, req, prof = (
        pem(tmp_path, n) for n in ("ini.pem", "aws.pem", "req.pem", "profile.pem")
    )
    (tmp_path / "aws-config").write_text(f"[default]\nca_bundle = {prof}\n")
    fresh = botocore.session.Session  # reads AWS_CONFIG_FILE when made
    assert tls_verify(cfg(), session=fresh()) is True
    clean_env.setenv("REQUESTS_CA_BUNDLE", req)
    assert tls_verify(cfg(), session=fresh()) == req
    clean_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    assert tls_verify(cfg(), session=fresh()) == prof
    clean_env.setenv("AWS_CA_BUNDLE", aws)
    assert tls_verify(cfg(), session=fresh()) == aws
    assert tls_verify(cfg(ca_bundle=ini), session=fresh()) == ini
    assert tls_verify(cfg(ca_bundle=ini, verify_tls=False), session=fresh()) is False
    assert tls_verify(cfg(verify_tls=False), session=fresh()) is False


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "the environment variable AWS_CA_BUNDLE is set but empty"),
        (
            "/no/such/ca.pem",
            "the environment variable AWS_CA_BUNDLE is '/no/such/ca.pem', which "
            "is not a readable file or folder",
        ),
    ],
)
def test_a_bad_aws_ca_bundle_is_a_config_error_naming_it(clean_env, value, message):
    clean_env.setenv("AWS_CA_BUNDLE", value)
    with pytest.raises(ConfigError, match=message + r".*\[dest1\]"):
        tls_verify(cfg(), session=botocore.session.Session())


@pytest.mark.interop
@pytest.mark.parametrize("data_path", ["raw", "botocore"])
def test_aws_ca_bundle_is_what_lets_a_copy_over_https_verify(clean_env, ceph, data_path):
    client = raw_client(ceph)
    src_bucket, dst_bucket = unique_bucket("src"), unique_bucket("dst")
    client.create_bucket(Bucket=src_bucket)
    client.create_bucket(Bucket=dst_bucket)
    client.put_object(Bucket=src_bucket, Key="small", Body=b"s" * 4096)

    def copy(key: str):
        src = Endpoint(endpoint_config(ceph, src_bucket, name="source", data_path=data_path))
        dst = Endpoint(
            endpoint_config(
                ceph, dst_bucket, name="dest1", data_path=data_path, endpoint_url=ceph["https_url"]
            )
        )
        assert (dst.lean is not None) == (data_path == "raw")  # the lean path carries it
        return copy_object(src, dst, "small", dest_key=key)

    # No ca_bundle key and no AWS_CA_BUNDLE: the private CA is not trusted.
    with pytest.raises(FatalEndpointError, match="TLS failed") as caught:
        copy("without")
    assert caught.value.code == "TLS"
    clean_env.setenv("AWS_CA_BUNDLE", ceph["ca_bundle"])
    assert copy("with").outcome is Outcome.COPIED
    assert client.get_object(Bucket=dst_bucket, Key="with")["Body"].read() == b"s" * 4096
