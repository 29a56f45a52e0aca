"""Ceph RGW bucket notifications for the push tests and benchmarks: topics and bucket
notification settings, on the RGW that :mod:`servers.ceph_rgw` starts.

``info`` is such a server's description (``endpoint_url``, ``access_key``, ``secret_key``,
``region``). RGW 16.2 serves an SNS-shaped topic API at its S3 URL (``../shared/INTEROP.md``, "Ceph RGW
16.2 bucket notifications"). :func:`create_topic` makes (or re-points) a topic that POSTs to
an HTTP endpoint, :func:`attach` sends a bucket's object events to it, :func:`detach` and
:func:`delete_topic` undo that. Two RGW 16.2 bugs shape how these are used:

- DeleteObjects on a bucket with any notification configuration aborts radosgw: delete one
  key at a time while a bucket is attached, and :func:`detach` before cleaning it up.
- A persistent topic whose endpoint refuses connections stalls for minutes: keep its
  endpoint answering until the topic is deleted.

Creating a topic again under the same name replaces its attributes (its push endpoint) and
keeps its persistent queue, which RGW already polls: re-pointing a warm persistent topic
costs no new warm-up (a new one delivers its first event only after 18-27 s). A bucket's
notification keeps a copy of the topic as it was when attached, though: attach the bucket
again after re-pointing, or its events still go to the old endpoint. ListTopics keeps
listing a deleted topic while a bucket notification still names it.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import boto3
import botocore.config
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

#: Every object event RGW 16.2 sends (creations: Put, Post, Copy, CompleteMultipartUpload;
#: removals: Delete, DeleteMarkerCreated).
ALL_OBJECT_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


def _client(service: str, info: dict, **options):
    return boto3.client(
        service,
        endpoint_url=info["endpoint_url"],
        region_name=info["region"],
        aws_access_key_id=info["access_key"],
        aws_secret_access_key=info["secret_key"],
        **options,
    )


def s3_client(info: dict):
    """A plain S3 client (path style) for the RGW ``info`` describes."""
    return _client("s3", info, config=botocore.config.Config(s3={"addressing_style": "path"}))


def sns_client(info: dict):
    """An SNS client for the topic API of the RGW ``info`` describes (a ``ceph`` fixture)."""
    return _client("sns", info)


def create_topic(info: dict, name: str, push_endpoint: str, *, persistent: bool = False) -> str:
    """Create topic ``name`` pushing to ``push_endpoint``, or re-point it; returns its ARN.

    ``persistent`` topics queue events in RADOS and retry until the endpoint answers 2xx;
    synchronous ones POST while the S3 request waits and drop what they cannot deliver.
    """
    attributes = {"push-endpoint": push_endpoint}
    if persistent:
        attributes["persistent"] = "true"
    return sns_client(info).create_topic(Name=name, Attributes=attributes)["TopicArn"]


def topic_endpoint(info: dict, arn: str) -> str:
    """The push endpoint topic ``arn`` has now, as RGW reports it."""
    attrs = sns_client(info).get_topic_attributes(TopicArn=arn)["Attributes"]
    return attrs["EndPoint"]


def delete_topic(info: dict, arn: str) -> None:
    """Delete topic ``arn`` (with a persistent topic, its queue and what is left in it)."""
    sns_client(info).delete_topic(TopicArn=arn)


def attach(info: dict, bucket: str, arn: str, *, events=ALL_OBJECT_EVENTS) -> None:
    """Send ``bucket``'s object ``events`` to topic ``arn`` (replacing any configuration)."""
    s3_client(info).put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {"Id": f"s3s3-{bucket}", "TopicArn": arn, "Events": list(events)}
            ]
        },
    )


def detach(info: dict, bucket: str) -> None:
    """Remove every notification of ``bucket``: afterwards DeleteObjects is safe on it.

    RGW 16.2 answers MalformedXML to an empty PutBucketNotificationConfiguration; its own
    ``DELETE /bucket?notification`` (no boto3 operation) removes them all.
    """
    url = f"{info['endpoint_url']}/{bucket}?notification"
    # Signed for the Host header urllib sends: botocore would sign "127.0.0.1" for a URL
    # on port 80, where urllib sends "127.0.0.1:80", and RGW answers 403.
    request = AWSRequest(method="DELETE", url=url, headers={"Host": urlsplit(url).netloc})
    credentials = Credentials(info["access_key"], info["secret_key"])
    S3SigV4Auth(credentials, "s3", info["region"]).add_auth(request)
    prepared = request.prepare()
    with urllib.request.urlopen(
        urllib.request.Request(prepared.url, method="DELETE", headers=dict(prepared.headers)),
        timeout=30,
    ) as answer:
        if answer.status not in (200, 204):
            raise AssertionError(
                f"DELETE ?notification of bucket {bucket!r} answered {answer.status}"
            )


def attached(info: dict, bucket: str) -> list[str]:
    """The topic ARNs ``bucket`` notifies."""
    conf = s3_client(info).get_bucket_notification_configuration(Bucket=bucket)
    return [c["TopicArn"] for c in conf.get("TopicConfigurations", ())]


__all__ = [
    "ALL_OBJECT_EVENTS",
    "attach",
    "attached",
    "create_topic",
    "delete_topic",
    "detach",
    "s3_client",
    "sns_client",
    "topic_endpoint",
]
