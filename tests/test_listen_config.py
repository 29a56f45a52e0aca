"""The INI keys the listener added: [listen] event_keys, and [pubsub] list needing the stream."""

from __future__ import annotations

import textwrap

import pytest
from redis.cluster import key_slot

from s3s3.config import load
from s3s3.errors import ConfigError
from s3s3.queue.minio_list import processing_key

BASE = """\
[source]
bucket_name = src
endpoint_url = http://127.0.0.1:9000
[dest]
bucket_name = dst
"""


def daemon_keys(cfg) -> tuple[str, ...]:
    """Every Redis key the listener writes in stream mode (marker keys aside)."""
    keys = [cfg.stream, cfg.dead_letter_stream]
    if cfg.list_key:
        keys.append(processing_key(cfg.list_key))
    return tuple(keys)


def load_text(tmp_path, text: str):
    path = tmp_path / "s3s3.ini"
    path.write_text(BASE + textwrap.dedent(text))
    return load(path, search_path=[], env={}), path


def test_listen_defaults(tmp_path):
    s, _ = load_text(tmp_path, "")
    assert s.listen.event_key_encoding == "auto"
    assert s.listen.delete is False and s.redis.list_key is None


@pytest.mark.parametrize("value", ["auto", "url", "raw"])
def test_event_keys(tmp_path, value):
    s, _ = load_text(tmp_path, f"[listen]\nevent_keys = {value}\n")
    assert s.listen.event_key_encoding == value


def test_event_keys_error_names_file_section_and_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, "[listen]\nevent_keys = base64\n")
    path = tmp_path / "s3s3.ini"
    assert str(err.value) == (
        "value 'base64' for 'event_keys' is not one of auto, raw, url in "
        f"section 'listen' (file: '{path}')"
    )


def test_list_needs_stream_mode(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, "[pubsub]\nlist = minio_events\n")
    path = tmp_path / "s3s3.ini"
    assert str(err.value) == (
        "value 'minio_events' for 'list' needs 'mode = stream' (list "
        "entries are moved into the stream) in section 'pubsub' "
        f"(file: '{path}')"
    )
    s, _ = load_text(tmp_path, "[pubsub]\nmode = stream\nlist = minio_events\n")
    assert s.redis.list_key == "minio_events"


def test_every_daemon_key_shares_one_cluster_slot(tmp_path):
    # Redis Cluster: MULTI/EXEC of XADD (dead letter) + XACK, and BLMOVE between the MinIO
    # list's keys, need their keys in one slot; the {channel} hash tag does it.
    s, _ = load_text(tmp_path, "[pubsub]\nmode = stream\nchannel = backup\nlist = {backup}:minio\n")
    slots = {key_slot(k.encode()) for k in daemon_keys(s.redis)}
    assert len(slots) == 1, daemon_keys(s.redis)
    assert daemon_keys(s.redis)[:2] == ("s3s3:{backup}:stream", "s3s3:{backup}:dead")


def test_list_without_hash_tag_gets_its_processing_list_in_its_own_slot(tmp_path):
    s, _ = load_text(tmp_path, "[pubsub]\nmode = stream\nlist = minio_events\n")
    stream, dead, processing = daemon_keys(s.redis)
    assert processing == "{minio_events}:s3s3-processing"
    assert key_slot(b"minio_events") == key_slot(processing.encode())
