"""What the push intakes share below them: the order and time read from a record, the
stream entry they write, SNS envelopes, the ``[http]`` and ``[amqp]`` settings, how an
outage is tracked and how a failed write is sorted."""

from __future__ import annotations

import json
import textwrap
import threading

import pytest
import redis.exceptions

from s3s3.config import RedisConfig, load
from s3s3.errors import BacklogFull, ConfigError, MessageError, QueueUnavailable, RedisFatal
from s3s3.queue.announce import sort_failure
from s3s3.queue.messages import (
    entry_fields,
    event_time_of,
    parse_entry,
    parse_message,
    sequence_of,
)
from s3s3.queue.outage import Outage, Spell

# A record as Ceph RGW 16.2 sent it (../shared/INTEROP.md), key raw.
RGW = {
    "eventVersion": "2.2",
    "eventSource": "ceph:s3",
    "awsRegion": "",
    "eventTime": "2026-12-01T18:00:42.858865Z",
    "eventName": "ObjectCreated:Put",
    "s3": {
        "bucket": {"name": "b"},
        "object": {
            "key": "a b+c.txt",
            "size": 10,
            "eTag": "3363",
            "versionId": "",
            "sequencer": "4A0B0F6B7BA5D033",
        },
    },
    "eventId": "1",
}


def rgw(**object_fields) -> bytes:
    record = json.loads(json.dumps(RGW))
    record["s3"]["object"].update(object_fields)
    return json.dumps({"Records": [record]}).encode()


def test_rgw_sequencer_is_its_clock_decoded():
    # 4A0B0F6B = 0x6B0F0B4A seconds = 2026-12-01T18:00:42Z; 7BA5D033 = 869,311,867 ns.
    assert sequence_of("4A0B0F6B7BA5D033", source="ceph:s3") == 1796148042_869311867
    # Little-endian bytes do not grow as a hex number: second 0x6B0F0BFF, then 0x6B0F0C00.
    before, after = "FF0B0F6B00000000", "000C0F6B00000000"
    assert int(after, 16) < int(before, 16)
    assert sequence_of(after, source="ceph:s3") > sequence_of(before, source="ceph:s3")
    assert sequence_of(after, source="ceph:s3") - sequence_of(before, source="ceph:s3") == 10**9


def test_aws_and_minio_sequencers_are_hex_numbers():
    assert sequence_of("0055AED6DCD90281E5") == 0x0055AED6DCD90281E5
    assert sequence_of("55AED6DCD90281E5") == sequence_of("0055AED6DCD90281E5")  # padding
    assert sequence_of("17A5C1E9B3D5F2A0", source="minio:s3") == 0x17A5C1E9B3D5F2A0


@pytest.mark.parametrize("text", ["", "  ", "xyz", "12G4", "F" * 65])
def test_a_sequencer_that_reads_as_none_is_left_out(text):
    assert sequence_of(text) is None
    parsed = parse_message(rgw(sequencer=text))
    assert parsed.items[0].sequence is None


def test_rgw_nanoseconds_out_of_range_read_as_no_order():
    assert sequence_of("4A0B0F6BFFFFFFFF", source="ceph:s3") is None


def test_a_sequencer_of_the_wrong_type_is_a_bad_message():
    with pytest.raises(MessageError, match=r"Records\[0\]: 's3.object.sequencer' is int"):
        parse_message(rgw(sequencer=7))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-12-01T18:00:42.858865Z", 1796148042.858865),
        ("2019-03-27T01:51:22.335Z", 1553651482.335),  # MinIO
        ("1970-01-01T00:00:00.000Z", 0.0),  # AWS's test event
        ("2019-03-27T03:51:22+02:00", 1553651482.0),
        ("2019-03-27T01:51:22", 1553651482.0),  # no zone: UTC
    ],
)
def test_event_times(text, expected):
    assert event_time_of(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "yesterday", "2019-13-01T00:00:00Z", "2019-03-27"])
def test_a_time_that_reads_as_none(text):
    assert event_time_of(text) is None


def test_the_entry_of_a_pushed_record_round_trips():
    item = parse_message(rgw(), source_bucket="b").items[0]
    assert (item.key, item.sequence, item.compare) == ("a b+c.txt", 1796148042869311867, False)
    fields = entry_fields(item, via="http")
    assert fields == {
        "key": "a b+c.txt",
        "op": "copy",
        "via": "http",
        "bucket": "b",
        "event": "ObjectCreated:Put",
        "seq": "1796148042869311867",
        "time": "1796148042.858865",
    }
    # As redis-py hands them back: bytes.
    back = parse_entry({k.encode(): v.encode() for k, v in fields.items()}, source_bucket="b")
    assert back.items == (
        item.__class__(
            "copy",
            "a b+c.txt",
            bucket="b",
            event="ObjectCreated:Put",
            sequence=1796148042869311867,
            event_time=1796148042.858865,
            compare=True,
        ),
    )


def test_an_entry_for_another_bucket_is_skipped():
    fields = entry_fields(parse_message(rgw()).items[0], via="swift")
    parsed = parse_entry(fields, source_bucket="other")
    assert parsed.items == ()
    assert parsed.skipped[0].reason == "bucket 'b' is not the source bucket 'other'"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"key": "k", "seq": "-1"}, "'seq' field is '-1'; expected a whole number"),
        ({"key": "k", "seq": "１２"}, "expected a whole number"),  # not ASCII digits
        ({"key": "k", "time": "soon"}, "'time' field is 'soon'; expected seconds"),
        ({"key": "k", "time": "inf"}, "'time' field is 'inf'"),
        ({"key": "k", "bucket": b"\xff"}, "'bucket' field is not UTF-8"),
    ],
)
def test_bad_entry_fields_are_bad_messages(fields, message):
    with pytest.raises(MessageError, match=message):
        parse_entry(fields)


def test_an_sns_notification_is_unwrapped_once():
    inner = rgw().decode()
    envelope = json.dumps({"Type": "Notification", "MessageId": "m", "Message": inner})
    assert parse_message(envelope).items == parse_message(inner).items
    twice = json.dumps({"Type": "Notification", "Message": envelope})
    with pytest.raises(MessageError, match="unknown shape"):
        parse_message(twice)
    with pytest.raises(MessageError, match="SNS notification whose 'Message' is no event"):
        parse_message(json.dumps({"Type": "Notification", "Message": "hello"}))


def test_an_sns_subscription_confirmation_is_skipped_with_its_url():
    doc = {
        "Type": "SubscriptionConfirmation",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&T=x",
    }
    parsed = parse_message(json.dumps(doc))
    assert parsed.items == ()
    assert "SubscribeURL https://sns.us-east-1.amazonaws.com/?Action=Confirm" in (
        parsed.skipped[0].reason
    )


# --------------------------------------------------------------------------- settings

BASE = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9000
[dest]
bucket_name = dst
"""
TOKEN = "k4Qx9-Pz_2mLwV7rTt0sYb"


def settings_of(tmp_path, extra: str, env=None):
    path = tmp_path / "s3s3.ini"
    path.write_text(BASE + textwrap.dedent(extra))
    return load(path, search_path=[], env=env or {})


def test_http_and_amqp_sections(tmp_path):
    s = settings_of(
        tmp_path,
        f"""
        [http]
        token = {TOKEN}
        port = 8443
        max_body = 64k
        [amqp]
        url = amqp://s3s3:pw-of-amqp@rabbit:5672/ceph
        queue = rgw-events
        exchange = rgw
        routing_key = t1
        """,
    )
    assert (s.http.host, s.http.port, s.http.max_body, s.http.scheme) == (
        "127.0.0.1",
        8443,
        65536,
        "http",
    )
    assert TOKEN not in repr(s.http)
    assert (s.amqp.queue, s.amqp.exchange, s.amqp.routing_key, s.amqp.declare) == (
        "rgw-events",
        "rgw",
        "t1",
        True,
    )
    assert "pw-of-amqp" not in repr(s.amqp) and "pw-of-amqp" not in s.amqp.safe_url
    assert TOKEN in s.secrets() and "pw-of-amqp" in s.secrets()


def test_no_sections_no_intakes(tmp_path):
    s = settings_of(tmp_path, "")
    assert s.http is None and s.amqp is None


def test_the_token_may_come_from_the_environment(tmp_path):
    s = settings_of(tmp_path, "[http]\n", env={"S3S3_HTTP_TOKEN": TOKEN})
    assert s.http.token == TOKEN


@pytest.mark.parametrize(
    "extra, message",
    [
        ("[http]\n", "'token' is missing"),
        ("[http]\ntoken = short\n", "'token' must be at least 16 characters"),
        ("[http]\ntoken = has/a/slash/in/it/x\n", "'token' must be at least 16"),
        (f"[http]\ntoken = {TOKEN}\nport = 0\n", "port"),
        (f"[http]\ntoken = {TOKEN}\nmax_body = 1m\n", "must be at most 256KiB"),
        (f"[http]\ntoken = {TOKEN}\ntls_cert = /nonexistent.pem\n", "is not a readable file"),
        ("[amqp]\nurl = http://rabbit/\n", "is not an AMQP URL"),
        ("[amqp]\nurl = amqp://rabbit:notaport/\n", "is not an AMQP URL"),
        ("[amqp]\nexchange_type = headers\n", "'exchange_type'"),
        ("[amqp]\nprefetch = 0\n", "'prefetch' must be greater than zero"),
        ("[amqp]\nwho = me\n", "who"),
    ],
)
def test_bad_intake_settings_name_section_and_key(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message) as err:
        settings_of(tmp_path, extra)
    assert "[http]" in str(err.value) or "[amqp]" in str(err.value) or "section" in str(err.value)
    assert TOKEN not in str(err.value)


def test_tls_cert_and_key_go_together(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="'tls_cert' and 'tls_key' go together"):
        settings_of(tmp_path, f"[http]\ntoken = {TOKEN}\ntls_cert = {cert}\n")


# --------------------------------------------------------------------------- [metrics]


def test_metrics_and_logging_sections(tmp_path):
    s = settings_of(
        tmp_path,
        f"""
        [metrics]
        listen = 9464-9470
        intake = [::1]:9465
        textfile = {tmp_path}/s3s3.prom
        pushgateway = http://pushgw:9091
        [logging]
        format = json
        """,
    )
    assert s.metrics.listen == ("127.0.0.1", 9464, 9470)
    assert s.metrics.intake == ("::1", 9465, 9465)
    assert s.metrics.textfile == f"{tmp_path}/s3s3.prom"
    assert s.metrics.pushgateway == "http://pushgw:9091"
    assert s.log_format == "json"
    default = settings_of(tmp_path, "")
    assert (default.metrics.listen, default.metrics.textfile, default.log_format) == (
        None,
        None,
        "text",
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        ("[metrics]\nlisten = 99999\n", "value '99999' for 'listen' is not a port, HOST:PORT"),
        ("[metrics]\nlisten = 9470-9464\n", "HOST:PORT-PORT"),
        ("[metrics]\nlisten = :9464\n", "has no valid host"),
        ("[metrics]\nlisten = 9464\nintake = 127.0.0.1:9464\n", "the same address"),
        ("[metrics]\ntextfile = /no/such/dir/s3s3.prom\n", "its folder does not exist"),
        ("[metrics]\npushgateway = gw:9091\n", "pushgateway"),
        ("[logging]\nformat = xml\n", "'format'"),
    ],
)
def test_bad_metrics_settings(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        settings_of(tmp_path, extra)


# --------------------------------------------------------------------------- outages


def test_an_outage_is_told_at_its_first_failure_and_at_its_end_only():
    outage = Outage()
    assert (outage.current(), outage.ever_up) == (None, False)
    assert outage.failed("ConnectionError: refused") == 1  # the one to log
    assert [outage.failed(f"TimeoutError: {n}") for n in range(3)] == [2, 3, 4]
    going_on = outage.current()
    assert going_on is not None
    assert (going_on.failures, going_on.error) == (4, "TimeoutError: 2")
    ended = outage.recovered()
    assert ended is not None and (ended.failures, ended.error) == (4, "TimeoutError: 2")
    assert ended.lasted_s >= going_on.lasted_s >= 0
    assert (outage.current(), outage.ever_up) == (None, True)
    assert outage.recovered() is None  # a success with nothing to say
    assert outage.failed() == 1  # the next outage is told again


def test_the_first_success_of_all_is_told_once_even_without_an_outage():
    outage = Outage()
    assert outage.recovered() == Spell(0, 0.0)
    assert outage.recovered() is None
    assert outage.ever_up


def test_failures_from_many_threads_make_one_first_and_add_up():
    outage = Outage()
    counts: list[int] = []
    lock = threading.Lock()

    def fail() -> None:
        for _ in range(200):
            n = outage.failed()
            with lock:
                counts.append(n)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == list(range(1, 1601))
    ended = outage.recovered()
    assert ended is not None and ended.failures == 1600


CFG = RedisConfig(url="redis://:pw-secret@127.0.0.1:6379/0", mode="stream", stream="s3s3:{t}:s")


def test_a_refusal_is_fatal_though_redis_py_makes_it_a_connection_error():
    exc = redis.exceptions.AuthenticationError("invalid username-password pair")
    assert isinstance(exc, redis.exceptions.ConnectionError)
    error = sort_failure(CFG, exc)
    assert isinstance(error, RedisFatal)
    assert str(error) == (
        "Redis at redis://:***@127.0.0.1:6379/0 refused s3s3: AuthenticationError: "
        "invalid username-password pair"
    )
    assert str(sort_failure(CFG, exc, detail=True)) == str(error)


def test_a_full_stream_and_a_lost_connection_are_unavailable_said_for_senders_or_logs():
    full = BacklogFull("stream s3s3:{t}:s still holds 10 entries, at its maxlen of 10", added=3)
    for detail in (False, True):
        error = sort_failure(CFG, full, detail=detail)
        assert type(error) is QueueUnavailable and str(error) == str(full)
    lost = redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379, pw-secret")
    error = sort_failure(CFG, lost)
    assert type(error) is QueueUnavailable
    # What a sender is answered names the type only.
    assert (
        str(error) == "Redis at redis://:***@127.0.0.1:6379/0 cannot take entries: ConnectionError"
    )
    logged = sort_failure(CFG, lost, detail=True)
    assert str(logged) == "ConnectionError: Error 111 connecting to 127.0.0.1:6379, ***"
