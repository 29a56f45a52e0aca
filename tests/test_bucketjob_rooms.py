"""The bucket job's rooms on their own: options, per-destination state, deletion, the work
pool and the sinks, with an injected copier. No S3 server: the endpoints are never called
(the copier and the deletions are the tests'); the enqueue sink writes to the test Redis."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from s3s3.bucketjob.deletion import DELETE_BATCH, DeletionSpool, delete_extras
from s3s3.bucketjob.destination import MAX_FAILURES_KEPT, Destination
from s3s3.bucketjob.options import JobOptions, make_options
from s3s3.bucketjob.pool import WorkPool
from s3s3.bucketjob.sinks import ENQUEUE_BATCH, CopySink, DryRunSink, EnqueueSink
from s3s3.config import BucketConfig, EndpointConfig, RedisConfig
from s3s3.errors import FatalEndpointError, TransientEndpointError
from s3s3.model import CopyResult, ObjectInfo, Outcome
from s3s3.plan import Strategy
from s3s3.store.endpoint import Endpoint

MD5 = "0cc175b9c0f1b6a831c399e269772661"


def endpoint(name: str = "dest", **cfg) -> Endpoint:
    # Never called: nothing here reaches a server.
    return Endpoint(EndpointConfig(name=name, bucket=f"{name}-bucket", **cfg))


def destination(name: str = "dest", **cfg) -> Destination:
    return Destination(endpoint(name, **cfg), strategy=Strategy())


def info(key: str, size: int = 3) -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=MD5)


def transient(key: str = "k") -> TransientEndpointError:
    return TransientEndpointError(
        "503 Slow Down", op="PutObject", endpoint="dest", bucket="b", key=key
    )


def fatal(code: str, key: str | None = "k") -> FatalEndpointError:
    return FatalEndpointError(code, op="PutObject", endpoint="dest", bucket="b", key=key, code=code)


@pytest.fixture
def pool():
    made = WorkPool(4, stop=threading.Event())
    yield made
    made.shutdown(cancel_queued=True)


# --------------------------------------------------------------------------- options


def test_verify_md5_is_asked_by_the_run_or_either_endpoint():
    plain, verifying = EndpointConfig("s", "b"), EndpointConfig("d", "c", verify_md5=True)
    assert not JobOptions().verifies_md5(plain, plain)
    assert JobOptions(verify_md5=True).verifies_md5(plain, plain)
    assert JobOptions().verifies_md5(verifying, plain)
    assert JobOptions().verifies_md5(plain, verifying)
    assert JobOptions(BucketConfig(size_only=True)).strategy(plain, verifying) == Strategy(
        size_only=True, verify_md5=True
    )


def test_options_keep_every_other_bucket_setting_and_check_their_bounds():
    cfg = BucketConfig(lock="redis", lock_ttl_s=60.0, grace_s=5.0, workers=3)
    opts = make_options(cfg, workers=7, enqueue=True)
    assert opts.bucket == BucketConfig(lock="redis", lock_ttl_s=60.0, grace_s=5.0, workers=7)
    assert opts.enqueues and not JobOptions(dry_run=True, enqueue=True).enqueues
    with pytest.raises(ValueError, match="grace_s must be zero or more, got -1"):
        JobOptions(BucketConfig(grace_s=-1))
    with pytest.raises(ValueError, match="max_delete_fraction must be between 0 and 1, got 1.5"):
        JobOptions(BucketConfig(max_delete_fraction=1.5))


# --------------------------------------------------------------------------- destination


def test_a_destination_counts_what_became_of_each_key():
    dest = destination()
    dest.count_done("a", Outcome.COPIED, size=10)
    dest.count_done("b", Outcome.SKIPPED)
    dest.count_done("c", Outcome.MISSING)  # gone from the source since it was listed
    dest.count_skipped()
    dest.count_enqueued()
    dest.count_deleted(2)
    s = dest.summary
    assert (s.copied, s.bytes_copied, s.skipped, s.enqueued, s.deleted) == (1, 10, 3, 1, 2)
    assert s.ok and dest.last_done > 0


def test_a_destination_keeps_a_bounded_number_of_failures_but_counts_all():
    dest = destination()
    for n in range(MAX_FAILURES_KEPT + 5):
        dest.count_failed(f"k{n}", transient(f"k{n}"), op="copy")
    assert dest.summary.failed == MAX_FAILURES_KEPT + 5
    assert len(dest.summary.failures) == MAX_FAILURES_KEPT
    first = dest.summary.failures[0]
    assert (first.key, first.op) == ("k0", "copy") and "503 Slow Down" in first.cause


def test_only_failures_that_concern_the_whole_endpoint_stop_the_run():
    dest = destination()
    dest.fail_or_stop("k", fatal("AccessDenied"), op="copy")  # this key only
    assert dest.summary.failed == 1
    with pytest.raises(FatalEndpointError, match="InvalidAccessKeyId"):
        dest.fail_or_stop("k", fatal("InvalidAccessKeyId"), op="copy")
    assert dest.summary.failed == 1


def test_a_broken_destination_says_so_once_for_all_its_keys():
    dest = destination()
    dest.mark_broken("unreachable: no route")
    dest.count_unreachable()
    assert dest.broken and dest.summary.failed == 1 and not dest.summary.ok
    assert dest.summary.error == (
        "unreachable: no route; every key of this run is counted as failed there"
    )


# --------------------------------------------------------------------------- deletion


def test_the_spool_gives_back_any_key_in_the_order_it_was_added():
    spool = DeletionSpool()
    assert len(spool) == 0 and not spool and list(spool.keys()) == []
    keys = ["plain", "line\nbreak", "tab\tand \u00e9\U0001f600", '"quoted"', " "]
    for key in keys:
        spool.add(key)
    assert len(spool) == 5 and list(spool.keys()) == keys
    assert list(spool.keys()) == keys  # read again from the start
    spool.close()
    assert list(spool.keys()) == []


def doomed(count: int, *, present: int, name: str = "dest") -> Destination:
    dest = destination(name)
    for n in range(count):
        dest.doomed.add(f"old{n:05d}")
    dest.present = present
    return dest


def test_deletions_go_in_batches_within_the_limit_and_are_refused_above_it():
    many = doomed(DELETE_BATCH + 1, present=3 * DELETE_BATCH)
    too_many = doomed(3, present=4, name="other")
    handed: list[tuple[str, int]] = []
    done = delete_extras(
        [many, too_many],
        max_delete_fraction=0.5,
        stop=threading.Event(),
        delete=lambda dest, keys: handed.append((dest.name, len(keys))),
    )
    assert done
    assert handed == [("dest", DELETE_BATCH), ("dest", 1)]
    assert not many.summary.delete_refused
    assert too_many.summary.delete_refused and too_many.summary.error.startswith(
        "refusing to delete 3 of the 4 keys in scope (more than max_delete_fraction = 0.5); "
        "nothing was deleted"
    )


def test_a_broken_destination_loses_nothing_and_a_stop_ends_the_deletions():
    broken = doomed(1, present=10)
    broken.mark_broken("listing failed")
    handed = []
    assert delete_extras(
        [broken], max_delete_fraction=1.0, stop=threading.Event(), delete=handed.append
    )
    assert handed == []
    stop = threading.Event()
    stop.set()
    assert not delete_extras(
        [doomed(1, present=10)], max_delete_fraction=1.0, stop=stop, delete=handed.append
    )
    assert handed == []


# --------------------------------------------------------------------------- pool


def test_the_pool_holds_at_most_twice_its_workers_and_a_fatal_item_stops_the_run():
    stop = threading.Event()
    pool = WorkPool(1, stop=stop)
    release = threading.Event()
    pool.submit(release.wait)
    pool.submit(release.wait)
    third = threading.Thread(target=pool.submit, args=(release.wait,), daemon=True)
    third.start()
    third.join(0.2)
    assert third.is_alive(), "a third item got in past 2 x workers"
    release.set()
    third.join(5)
    pool.wait()

    def boom():
        raise fatal("NoSuchBucket", key=None)

    pool.submit(boom)
    pool.wait()
    pool.shutdown(cancel_queued=False)
    assert stop.is_set() and pool.fatal is not None and pool.fatal.code == "NoSuchBucket"


# --------------------------------------------------------------------------- sinks


class Copier:
    """Stands in for copy_object: answers from a script, counting the calls."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, dict]] = []

    def __call__(self, src, dst, key, **kwargs) -> CopyResult:
        self.calls.append((dst.name, key, kwargs))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return CopyResult(key, dst.name, answer, size=3)


def test_the_copy_sink_retries_a_key_under_the_destination_policy(pool):
    dest = destination(max_attempts=2)
    copier = Copier(transient(), Outcome.COPIED)
    sink = CopySink(copier=copier)
    sink.open(endpoint("source"), pool)
    sink.take("k", info("k"), [(dest, None)], [])
    pool.wait()
    assert (dest.summary.copied, dest.summary.failed, dest.summary.bytes_copied) == (1, 0, 3)
    assert len(copier.calls) == 2
    _, key, kwargs = copier.calls[0]
    assert key == "k" and kwargs["force"] and kwargs["src_info"] == info("k")
    assert kwargs["cancel"] is pool.abandon


def test_the_copy_sink_gives_up_after_max_attempts_and_counts_the_failure(pool):
    dest = destination(max_attempts=2)
    copier = Copier(transient())
    sink = CopySink(copier=copier)
    sink.open(endpoint("source"), pool)
    sink.take("k", info("k"), [(dest, None)], [])
    pool.wait()
    assert len(copier.calls) == 2
    assert dest.summary.failed == 1 and dest.summary.failures[0].op == "copy"


def test_the_copy_sink_never_retries_what_is_not_retryable(pool):
    dest = destination(max_attempts=5)
    copier = Copier(fatal("AccessDenied"))
    sink = CopySink(copier=copier)
    sink.open(endpoint("source"), pool)
    sink.take("k", info("k"), [(dest, None)], [])
    pool.wait()
    assert len(copier.calls) == 1 and dest.summary.failed == 1


def test_the_copy_sink_copies_once_per_destination_and_stops_on_an_endpoint_wide_error(pool):
    one, two = destination("one"), destination("two")
    sink = CopySink(copier=Copier(Outcome.COPIED))
    sink.open(endpoint("source"), pool)
    sink.take("k", info("k"), [(one, None), (two, info("k", 1))], [])
    pool.wait()
    assert one.summary.copied == two.summary.copied == 1

    sink = CopySink(copier=Copier(fatal("InvalidAccessKeyId")))
    sink.open(endpoint("source"), pool)
    sink.take("k2", info("k2"), [(one, None)], [])
    pool.wait()
    assert pool.stop.is_set() and pool.fatal.code == "InvalidAccessKeyId"
    assert one.summary.failed == 0  # the run stops; no key is blamed


def test_the_dry_run_sink_reports_and_counts_without_copying(pool):
    dest = destination()
    plan: list[str] = []
    sink = DryRunSink(plan.append)
    sink.open(endpoint("source"), pool)
    sink.take("new", info("new", 5), [(dest, None)], [])
    sink.take("line\nbreak", info("line\nbreak", 4), [(dest, info("line\nbreak", 1))], [])
    sink.delete(dest, ["old", "older"])
    pool.wait()
    assert plan == [
        "copy [dest] new (new, 5 bytes)",
        "copy [dest] 'line\\nbreak' (size differs src(4) vs dst(1))",
        "delete [dest] old (not in the source)",
        "delete [dest] older (not in the source)",
    ]
    s = dest.summary
    assert (s.copied, s.bytes_copied, s.deleted) == (2, 9, 2)


def test_the_enqueue_sink_adds_one_entry_per_key_whatever_the_destinations(redis_url, pool):
    cfg = RedisConfig(url=redis_url, stream=f"s3s3:{{t-{uuid.uuid4().hex}}}:stream", maxlen=10**6)
    client = redis.Redis.from_url(redis_url)
    one, two = destination("one"), destination("two")
    sink = EnqueueSink(client, cfg)
    try:
        sink.open(endpoint("source"), pool)
        sink.take("both", info("both"), [(one, None)], [(two, info("both"))])
        for n in range(ENQUEUE_BATCH):  # a full batch goes at once, before the listing ends
            sink.take(f"k{n:04d}", info(f"k{n:04d}"), [(one, None)], [])
        assert client.xlen(cfg.stream) == ENQUEUE_BATCH
        sink.take("last", info("last"), [], [(two, info("last"))])
        sink.close()
        entries = client.xrange(cfg.stream)
    finally:
        client.delete(cfg.stream)
        client.close()
    assert len(entries) == ENQUEUE_BATCH + 2
    assert entries[0][1] == {b"key": b"both", b"op": b"copy"}
    assert entries[-1][1] == {b"key": b"last", b"op": b"copy"}
    assert (one.summary.enqueued, two.summary.enqueued) == (ENQUEUE_BATCH + 1, 2)


def test_the_enqueue_sink_refuses_to_start_when_redis_does_not_answer(pool):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    sink = EnqueueSink(client, RedisConfig(url=f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(
        Exception, match=rf"cannot enqueue: Redis at redis://127.0.0.1:{port}/0 does not answer"
    ):
        sink.open(endpoint("source"), pool)


class Deletes:
    """A destination store that answers delete_many from a script (a call-sequence double;
    the behaviour against a server is test_sync's)."""

    def __init__(self, *answers) -> None:
        self.cfg = EndpointConfig(name="dest", bucket="dest-bucket", max_attempts=2)
        self.name, self.bucket = self.cfg.name, self.cfg.bucket
        self.answers = list(answers)
        self.requests: list[list[str]] = []

    def delete_many(self, keys):
        self.requests.append(list(keys))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_delete_batch_is_retried_and_counts_the_keys_the_destination_refused(pool):
    refused = fatal("AccessDenied", key="b")
    store = Deletes(transient(), {"b": refused})
    dest = Destination(store, strategy=Strategy())
    sink = CopySink(copier=Copier(Outcome.COPIED))
    sink.open(endpoint("source"), pool)
    sink.delete(dest, ["a", "b", "c"])
    pool.wait()
    assert store.requests == [["a", "b", "c"]] * 2  # the 503 retried, once: max_attempts = 2
    s = dest.summary
    assert (s.deleted, s.failed) == (2, 1)
    (failure,) = s.failures
    assert (failure.key, failure.op) == ("b", "delete") and "AccessDenied" in failure.cause


def test_a_delete_batch_that_cannot_reach_the_endpoint_stops_the_run(pool):
    store = Deletes(fatal("InvalidAccessKeyId", key=None))
    dest = Destination(store, strategy=Strategy())
    sink = CopySink(copier=Copier(Outcome.COPIED))
    sink.open(endpoint("source"), pool)
    sink.delete(dest, ["a", "b"])
    pool.wait()
    assert pool.stop.is_set() and pool.fatal.code == "InvalidAccessKeyId"
    assert (dest.summary.deleted, dest.summary.failed) == (0, 0)
