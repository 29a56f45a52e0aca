"""The AMQP intake: consumes an AMQP 0.9.1 queue that Ceph RGW or MinIO publish bucket
notifications to, and adds their records to the stream the listeners read.

A message is acknowledged only after :meth:`~s3s3.queue.announce.Announcer.announce` returned,
so its records are in Redis by then; a message that does not parse is written to the
dead-letter stream (with its body, cut to :data:`~s3s3.model.MAX_MESSAGE_BYTES`) and then
acknowledged, so it is neither redelivered forever nor lost without a trace. While Redis is
unreachable the message in hand stays unacknowledged and is retried on
:class:`~s3s3.retry.Policy`'s backoff, with the broker connection kept alive (heartbeats) in
the meantime; at a stop it is handed back to the queue. A lost broker connection is
reconnected forever; the broker redelivers whatever was unacknowledged, and the duplicates
this makes are absorbed by the listener's stale-event check. Bad credentials, a missing
virtual host and missing permissions are :class:`~s3s3.errors.BrokerRefused`: retrying
cannot fix them.

pika's :class:`~pika.BlockingConnection` is the client (one connection, one channel, one
consumer, all in the thread that calls :meth:`AmqpIntake.serve`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pika  # type: ignore[import-untyped]
import pika.exceptions  # type: ignore[import-untyped]

from s3s3.config import AmqpConfig
from s3s3.errors import BrokerRefused, ConfigError, MessageError, QueueUnavailable
from s3s3.model import MAX_MESSAGE_BYTES
from s3s3.queue.announce import Announcer
from s3s3.queue.link import RedisLink
from s3s3.queue.redis_client import FATAL_ERRORS, TRANSIENT_ERRORS, refused
from s3s3.queue.stream.dead_letters import dead_letter_fields
from s3s3.queue.tally import Tally
from s3s3.redact import redact, url_secrets

log = logging.getLogger("s3s3.intake")

VIA = "amqp"
#: How long the consumer waits for a message before it looks at ``stop`` again.
POLL_S = 0.5
#: The longest stretch an outage's wait runs without looking at ``stop``.
STOP_CHECK_S = 0.25
#: Connecting (TCP, then the AMQP handshake) gives up after this long; then the backoff.
CONNECT_TIMEOUT_S = 10.0
#: Channel errors that retrying cannot fix when the broker answers them to the declarations
#: or the consume: access refused, not found (with ``declare = false``), and a queue or
#: exchange that exists with other settings.
REFUSED_CODES = {403: "refused access", 404: "found no such queue or exchange", 406: "refused"}

# pika's errors that the next connection may not have: the broker went away, closed the
# connection or the channel, or missed heartbeats.
_LOST = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


class AmqpIntake:
    """Consumes ``cfg.queue`` at ``cfg.url`` into ``announcer``'s stream.

    With ``cfg.declare`` it declares the queue (durable) and, when ``cfg.exchange`` is set,
    the exchange (durable, ``cfg.exchange_type``) and the binding with ``cfg.routing_key``:
    RGW publishes to its topic's ``amqp-exchange`` with the topic name as routing key, and
    does not declare the exchange itself. ``retry_base_s``/``retry_max_s`` shape the backoff
    of both outages (the broker's and Redis's).
    """

    def __init__(
        self,
        cfg: AmqpConfig,
        announcer: Announcer,
        *,
        tally: Tally,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        self.cfg = cfg
        self.announcer = announcer
        self.tally = tally
        self._secrets = url_secrets(cfg.url)

        def link(what: str, url: str, secrets: tuple[str, ...] | list[str] = ()) -> RedisLink:
            # Each outage (the broker's, Redis's) logs its first failure and its end once.
            return RedisLink(
                url,
                what=what,
                retry_base_s=retry_base_s,
                retry_max_s=retry_max_s,
                log=log,
                prefix="amqp intake: ",
                secrets=secrets,
            )

        self._broker = link("the AMQP broker", cfg.safe_url, self._secrets)
        self._redis = link("Redis", announcer.cfg.safe_url)
        #: Names this intake in dead letters and in the broker's connection list.
        self.consumer = f"s3s3intake-amqp@{socket.gethostname()}"

    def problem(self) -> str | None:
        return self.announcer.problem()

    def describe(self) -> str:
        bound = (
            f" bound to exchange {self.cfg.exchange!r} with {self.cfg.routing_key!r}"
            if self.cfg.exchange
            else ""
        )
        return f"AMQP queue {self.cfg.queue!r}{bound} at {self.cfg.safe_url}"

    def open(self) -> None:
        """Check the URL's options now; the broker itself is reached in :meth:`serve`, which
        waits out a broker that is down."""
        self._parameters()

    def serve(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; reconnect after every lost connection.

        Raises :class:`BrokerRefused` when the broker refuses s3s3 (credentials, virtual
        host, permissions) and :class:`~s3s3.errors.RedisFatal` when Redis does.
        """
        while not stop.is_set():
            try:
                connection = self._connect()
            except _LOST as exc:
                self._wait(None, self._broker.failed(exc), stop)
                continue
            try:
                self._consume(connection, stop)
            except _LOST as exc:
                if not stop.is_set():
                    self._wait(None, self._broker.failed(exc), stop)
            finally:
                _close(connection)

    # ------------------------------------------------------------------ the broker

    def _parameters(self) -> Any:
        try:
            params = pika.URLParameters(self.cfg.url)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                f"AMQP URL {self.cfg.safe_url!r}: {redact(str(exc), self._secrets)}",
                section="amqp",
                key="url",
            ) from None
        # One try per connect: the retries, their backoff and their log lines are ours.
        params.connection_attempts = 1
        params.retry_delay = 0
        params.socket_timeout = CONNECT_TIMEOUT_S
        params.stack_timeout = CONNECT_TIMEOUT_S
        params.client_properties = {"connection_name": f"{self.consumer} queue={self.cfg.queue}"}
        return params

    def _connect(self) -> Any:
        try:
            return pika.BlockingConnection(self._parameters())
        except pika.exceptions.ProbableAuthenticationError as exc:
            raise self._refused("refused the user name or password", exc) from None
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise self._refused(
                "refused the virtual host (it does not exist, or the user may not use it)", exc
            ) from None
        except pika.exceptions.AuthenticationError as exc:
            raise self._refused("offers no login method s3s3 can use", exc) from None

    def _refused(self, what: str, exc: BaseException) -> BrokerRefused:
        return BrokerRefused(
            f"the AMQP broker at {self.cfg.safe_url} {what}, for queue {self.cfg.queue!r}: "
            f"{type(exc).__name__}: {redact(str(exc), self._secrets)}"
        )

    def _setup(self, channel: Any) -> Iterator[tuple[Any, Any, Any]]:
        """Declare what ``cfg.declare`` asks for and start consuming; a refusal from the
        broker is :class:`BrokerRefused` naming the step."""
        cfg = self.cfg
        step = "setting up the channel"
        try:
            if cfg.declare:
                step = f"declaring queue {cfg.queue!r} (durable)"
                channel.queue_declare(cfg.queue, durable=True)
                if cfg.exchange:
                    step = f"declaring exchange {cfg.exchange!r} ({cfg.exchange_type}, durable)"
                    channel.exchange_declare(cfg.exchange, cfg.exchange_type, durable=True)
                    step = (
                        f"binding queue {cfg.queue!r} to exchange {cfg.exchange!r} "
                        f"with routing key {cfg.routing_key!r}"
                    )
                    channel.queue_bind(cfg.queue, cfg.exchange, routing_key=cfg.routing_key)
            step = f"setting prefetch {cfg.prefetch}"
            channel.basic_qos(prefetch_count=cfg.prefetch)
            step = f"consuming queue {cfg.queue!r}"
            messages = channel.consume(cfg.queue, inactivity_timeout=POLL_S)
            # The generator sends Basic.Consume at its first step: a refusal comes here.
            first = next(messages)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code in REFUSED_CODES:
                hint = (
                    " (set 'declare = true' in [amqp], or create it)"
                    if exc.reply_code == 404
                    else ""
                )
                raise BrokerRefused(
                    f"the AMQP broker at {cfg.safe_url} {REFUSED_CODES[exc.reply_code]} "
                    f"{step}: ({exc.reply_code}) {redact(str(exc.reply_text), self._secrets)}"
                    f"{hint}"
                ) from None
            raise

        def all_messages() -> Iterator[tuple[Any, Any, Any]]:
            yield first
            yield from messages

        return all_messages()

    def _consume(self, connection: Any, stop: threading.Event) -> None:
        channel = connection.channel()
        messages = self._setup(channel)
        self._broker.up()
        for method, properties, body in messages:
            if method is not None:
                # The message in hand is finished even when stop is set meanwhile.
                self._handle(connection, channel, method, properties, body, stop)
            if stop.is_set():
                # Prefetched messages not yet handed to us are rejected back to the queue;
                # anything else unacknowledged goes back when the connection closes.
                channel.cancel()
                return
        raise pika.exceptions.ConsumerCancelled(
            f"the broker cancelled the consumer of queue {self.cfg.queue!r} (was it deleted?)"
        )

    # ------------------------------------------------------------------ one message

    def _handle(
        self,
        connection: Any,
        channel: Any,
        method: Any,
        properties: Any,
        body: bytes,
        stop: threading.Event,
    ) -> None:
        bad: MessageError | None = None
        write: Callable[[], object]
        try:
            parsed = self.announcer.parse(body)
        except MessageError as exc:
            bad = exc
            letter = self._dead_letter(method, properties, body, exc)
            write = lambda: self._add_dead_letter(letter)  # noqa: E731
        else:
            write = lambda: self.announcer.announce(parsed)  # noqa: E731
        if not self._until_written(connection, write, stop):
            # Stopped while Redis was down: back to the queue, for the next consumer.
            channel.basic_nack(method.delivery_tag, requeue=True)
            self.tally.add("requests", intake=VIA, status="nack")
            return
        channel.basic_ack(method.delivery_tag)
        if bad is None:
            self.tally.add("requests", intake=VIA, status="ack")
            return
        self.tally.add("requests", intake=VIA, status="dead")
        self.tally.add("records", intake=VIA, outcome="bad")
        log.warning(
            "amqp intake: a message from queue %r is not understood, dead-lettered to %s: %s",
            self.cfg.queue,
            self.announcer.cfg.dead_letter_stream,
            bad,
        )

    def _until_written(
        self, connection: Any, write: Callable[[], object], stop: threading.Event
    ) -> bool:
        """``write()`` once Redis takes it; False when ``stop`` was set during an outage."""
        while True:
            try:
                write()
            except QueueUnavailable as exc:
                if self._wait(connection, self._redis.failed(exc), stop):
                    return False
                continue
            self._redis.up()
            return True

    def _dead_letter(self, method: Any, properties: Any, body: bytes, exc: MessageError) -> dict:
        message_id = properties.message_id
        original = (
            f"amqp:{self.cfg.queue}:{message_id}"
            if message_id
            else f"amqp:{self.cfg.queue}#{method.delivery_tag}"
        )
        return dead_letter_fields(
            {"message": bytes(body[:MAX_MESSAGE_BYTES]), "via": VIA},
            entry_id=original,
            reason="bad message",
            error=str(exc),
            consumer=self.consumer,
        )

    def _add_dead_letter(self, letter: dict) -> None:
        cfg = self.announcer.cfg
        try:
            self.announcer.client.xadd(
                cfg.dead_letter_stream, letter, maxlen=cfg.maxlen, approximate=True
            )
        except FATAL_ERRORS as exc:
            raise refused(cfg.safe_url, exc) from None
        except TRANSIENT_ERRORS as exc:
            raise QueueUnavailable(
                f"Redis at {cfg.safe_url} cannot take a dead letter: {type(exc).__name__}"
            ) from exc

    def _wait(self, connection: Any, delay_s: float, stop: threading.Event) -> bool:
        """Wait ``delay_s`` or until ``stop``; with a connection, keep it serviced
        (heartbeats) meanwhile. Returns whether ``stop`` is set."""
        deadline = time.monotonic() + delay_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if connection is None:
                stop.wait(min(left, STOP_CHECK_S))
            else:
                connection.sleep(min(left, STOP_CHECK_S))
        return stop.is_set()


def _close(connection: Any) -> None:
    """Close the connection; unacknowledged messages go back to the queue."""
    try:
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:
        pass  # already gone: the broker requeues what was unacknowledged all the same


__all__ = ["AmqpIntake"]
