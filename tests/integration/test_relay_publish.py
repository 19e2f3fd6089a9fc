"""The relay's batch publish against the real RabbitMQ: confirmed, in order, intact; a message
the broker cannot route fails the batch and leaves the channel usable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from worker.outbox import OutboxRow
from worker.relay import publish_confirmed


@pytest.fixture
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True, on_return_raises=True)


async def _exchange_with_queue(
    channel: AbstractChannel, bound: bool
) -> tuple[str, list[AbstractIncomingMessage]]:
    name = f"test.relay.{uuid.uuid4().hex[:8]}"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    received: list[AbstractIncomingMessage] = []
    if bound:
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="task.#")

        async def keep(message: AbstractIncomingMessage) -> None:
            received.append(message)
            await message.ack()

        await queue.consume(keep)
    return name, received


def _rows(count: int, type_: str = "task.locked", start: int = 1) -> list[OutboxRow]:
    return [
        OutboxRow(start + n, str(uuid.uuid4()), type_, f'{{"n":{start + n}}}') for n in range(count)
    ]


async def _wait_for(received: list[AbstractIncomingMessage], count: int) -> None:
    for _ in range(200):
        if len(received) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(received)} of {count} messages arrived")


async def test_a_batch_arrives_confirmed_in_order_with_its_properties(
    channel: AbstractChannel,
) -> None:
    name, received = await _exchange_with_queue(channel, bound=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    # Larger than a frame: the body is split over several content frames.
    big = OutboxRow(0, str(uuid.uuid4()), "task.updated", '"' + "x" * 400_000 + '"')
    rows = [big, *_rows(300), *_rows(5, "task.status.done", 301)]

    await publish_confirmed(underlay, name, rows, 30)
    await publish_confirmed(underlay, name, _rows(3, start=400), 30)

    await _wait_for(received, len(rows) + 3)
    assert [m.body.decode() for m in received[: len(rows)]] == [r.payload for r in rows]
    first = received[1]
    assert first.message_id == rows[1].event_id
    assert first.routing_key == first.type == "task.locked"
    assert first.content_type == "application/json"
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert received[-1].body == b'{"n":402}'
    # Nothing of the batches is left registered on the channel.
    assert not underlay.confirmations
    assert not underlay.message_id_delivery_tag


async def test_an_unroutable_message_fails_the_batch_and_the_channel_goes_on(
    channel: AbstractChannel,
) -> None:
    nowhere, _ = await _exchange_with_queue(channel, bound=False)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)

    with pytest.raises(aiormq.exceptions.PublishError):
        await publish_confirmed(underlay, nowhere, _rows(10), 30)

    # The same channel still publishes and confirms.
    name, received = await _exchange_with_queue(channel, bound=True)
    await publish_confirmed(underlay, name, _rows(4, start=20), 30)
    await _wait_for(received, 4)
    assert [m.body for m in received] == [f'{{"n":{n}}}'.encode() for n in range(20, 24)]
    assert not underlay.message_id_delivery_tag


async def test_a_closed_channel_fails_the_batch(channel: AbstractChannel) -> None:
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    await channel.close()
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        await publish_confirmed(underlay, "taskmanager.events", _rows(3), 30)


async def test_a_batch_that_cannot_be_sent_gives_its_delivery_tags_back(
    channel: AbstractChannel,
) -> None:
    name, received = await _exchange_with_queue(channel, bound=True)
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    # A routing key AMQP cannot carry (over 255 bytes): refused before anything is sent.
    with pytest.raises(TypeError, match="maximum length"):
        await publish_confirmed(underlay, name, [*_rows(2), *_rows(1, "task." + "x" * 300)], 30)
    assert not underlay.confirmations
    # The broker's count and ours still agree: aio-pika's own publish and the next batch,
    # mixed on the one channel, are confirmed.
    await publish_confirmed(underlay, name, _rows(2, start=50), 5)
    exchange = await channel.get_exchange(name)
    await exchange.publish(aio_pika.Message(b'{"n":52}'), routing_key="task.locked")
    await publish_confirmed(
        underlay, name, [*_rows(2, start=53), OutboxRow(99, "e", "task.x", "")], 5
    )
    await _wait_for(received, 5)
    assert [m.body for m in received] == [
        b'{"n":50}',
        b'{"n":51}',
        b'{"n":52}',
        b'{"n":53}',
        b'{"n":54}',
        b"",
    ]


async def test_a_nacked_message_fails_the_batch(channel: AbstractChannel) -> None:
    name = f"test.relay.{uuid.uuid4().hex[:8]}"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    full = await channel.declare_queue(
        exclusive=True,
        auto_delete=True,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    await full.bind(exchange, routing_key="#")
    underlay = await channel.get_underlay_channel()
    assert isinstance(underlay, aiormq.Channel)
    with pytest.raises(aiormq.exceptions.DeliveryError):
        await publish_confirmed(underlay, name, _rows(3), 5)
    assert not underlay.message_id_delivery_tag


async def test_a_channel_without_returns_is_refused(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        quiet = await connection.channel(publisher_confirms=True, on_return_raises=False)
        underlay = await quiet.get_underlay_channel()
        assert isinstance(underlay, aiormq.Channel)
        with pytest.raises(ValueError, match="on_return_raises"):
            await publish_confirmed(underlay, "taskmanager.events", _rows(1), 5)
