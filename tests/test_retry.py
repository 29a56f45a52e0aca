"""s3s3.retry: the one backoff policy (exact bounds, jitter) and the one retry loop."""

from __future__ import annotations

import threading

import pytest

from s3s3 import retry
from s3s3.config import EndpointConfig
from s3s3.errors import FatalEndpointError, TransientEndpointError


def transient() -> TransientEndpointError:
    return TransientEndpointError("503", op="PutObject", endpoint="d", bucket="b", key="k")


def fatal() -> FatalEndpointError:
    return FatalEndpointError("denied", op="PutObject", endpoint="d", bucket="b", key="k")


@pytest.fixture
def draws(monkeypatch):
    """``random.uniform`` pinned to one end of its range: ``draws("low")`` or ``"high"``."""

    def pin(end: str) -> None:
        monkeypatch.setattr(
            retry.random, "uniform", (lambda a, b: a) if end == "low" else (lambda a, b: b)
        )

    return pin


# --------------------------------------------------------------------------- Policy


@pytest.mark.parametrize(
    "failures, window",
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 20.0), (30, 20.0)],
)
def test_delay_doubles_from_base_up_to_max_and_is_drawn_from_half_to_whole(draws, failures, window):
    policy = retry.Policy(base_s=0.5, max_s=20.0)
    draws("low")
    assert policy.delay_s(failures) == pytest.approx(window / 2)
    draws("high")
    assert policy.delay_s(failures) == pytest.approx(window)


def test_delay_before_any_failure_is_the_base_window(draws):
    draws("high")
    assert retry.Policy(base_s=0.5, max_s=20.0).delay_s(0) == pytest.approx(0.5)


@pytest.mark.parametrize("failures", [1, 3, 8, 12])
def test_jitter_covers_the_range_and_never_leaves_it(failures):
    policy = retry.Policy(base_s=0.5, max_s=20.0)
    window = min(20.0, 0.5 * 2 ** (failures - 1))
    seen = [policy.delay_s(failures) for _ in range(2000)]
    assert all(window / 2 <= d <= window for d in seen)
    assert len(set(seen)) > 1900  # jittered, not a few fixed values
    assert min(seen) < window * 0.55 and max(seen) > window * 0.95  # the whole range


def test_next_delay_ends_after_the_attempts(draws):
    draws("high")
    policy = retry.Policy(attempts=3, base_s=0.5, max_s=20.0)
    assert policy.next_delay_s(1, 0.0) == pytest.approx(0.5)
    assert policy.next_delay_s(2, 0.5) == pytest.approx(1.0)
    assert policy.next_delay_s(3, 1.5) is None
    assert policy.next_delay_s(4, 1.5) is None


def test_next_delay_ends_where_the_wait_would_pass_the_deadline(draws):
    draws("high")
    policy = retry.Policy(attempts=100, base_s=0.5, max_s=20.0, deadline_s=2.0)
    assert policy.next_delay_s(1, 1.5) == pytest.approx(0.5)  # 1.5 + 0.5 = 2.0: still in
    assert policy.next_delay_s(1, 1.51) is None
    assert policy.next_delay_s(2, 0.9) == pytest.approx(1.0)
    assert policy.next_delay_s(2, 1.1) is None


def test_no_limit_on_attempts_for_loops_that_outlast_outages(draws):
    draws("high")
    policy = retry.Policy(attempts=None, base_s=0.5, max_s=20.0)
    assert policy.next_delay_s(10_000, 1e9) == pytest.approx(20.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attempts": 0}, "attempts must be at least 1, not 0"),
        ({"base_s": -1.0}, "need 0 <= base_s <= max_s, not -1.0 and 20.0"),
        ({"base_s": 2.0, "max_s": 1.0}, "need 0 <= base_s <= max_s, not 2.0 and 1.0"),
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        retry.Policy(**kwargs)
    assert str(err.value) == message


def test_the_policy_of_an_endpoint_is_its_max_attempts_and_retry_deadline():
    cfg = EndpointConfig(name="d", bucket="b", max_attempts=7, retry_deadline_s=42.0)
    policy = retry.Policy.for_endpoint(cfg)
    assert (policy.attempts, policy.deadline_s) == (7, 42.0)
    assert (policy.base_s, policy.max_s) == (0.5, 20.0)
    assert retry.ONCE.attempts == 1


# --------------------------------------------------------------------------- call


class Flaky:
    """Fails with ``errors`` in turn, then answers ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


NO_WAIT = retry.Policy(attempts=4, base_s=0.0, max_s=0.0)


def test_call_retries_retryable_failures_until_it_succeeds():
    fn = Flaky(transient(), transient())
    assert retry.call(fn, policy=NO_WAIT, what="put k") == "done"
    assert fn.calls == 3


def test_call_gives_up_after_the_attempts_with_the_last_error():
    last = transient()
    fn = Flaky(transient(), transient(), transient(), last, transient())
    with pytest.raises(TransientEndpointError) as err:
        retry.call(fn, policy=NO_WAIT, what="put k")
    assert err.value is last and fn.calls == 4


@pytest.mark.parametrize("error", [fatal(), ValueError("a bug")], ids=["fatal", "unknown"])
def test_call_never_retries_what_is_not_retryable(error):
    fn = Flaky(error)
    with pytest.raises(type(error)):
        retry.call(fn, policy=NO_WAIT, what="put k")
    assert fn.calls == 1


def test_call_stops_at_the_deadline(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(retry.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    policy = retry.Policy(attempts=100, base_s=1.0, max_s=1.0, deadline_s=5.0)
    fn = Flaky(*(transient() for _ in range(100)))
    with pytest.raises(TransientEndpointError):
        retry.call(fn, policy=policy, what="put k", clock=lambda: now[0])
    # Waits of 0.5-1.0 s: 6 to 11 tries fit in 5 s, never more; the last wait ends in it.
    assert 6 <= fn.calls <= 11 and now[0] <= 5.0


def test_a_set_cancel_ends_the_wait_and_raises_at_once():
    cancel = threading.Event()
    cancel.set()
    fn = Flaky(transient(), transient())
    with pytest.raises(TransientEndpointError):
        retry.call(
            fn, policy=retry.Policy(attempts=5, base_s=30.0, max_s=30.0), what="k", cancel=cancel
        )
    assert fn.calls == 1
