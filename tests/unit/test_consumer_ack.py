"""The consumer acknowledges a batch with one `ack(multiple=True)` per channel."""

from __future__ import annotations

from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

from worker.consumer import acknowledge


class Channel:
    def __init__(self, closed: bool = False) -> None:
        self.closed = closed


class Message:
    def __init__(self, tag: int, channel: Channel) -> None:
        self.delivery_tag = tag
        self._channel = channel
        self.acks: list[bool] = []

    @property
    def channel(self) -> Channel:
        if self._channel.closed:
            raise RuntimeError("channel closed")
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        if self._channel.closed:
            raise RuntimeError("channel closed")
        self.acks.append(multiple)


def batch(*messages: Message) -> list[AbstractIncomingMessage]:
    return cast(list[AbstractIncomingMessage], list(messages))


async def test_one_ack_up_to_the_last_message() -> None:
    channel = Channel()
    messages = [Message(tag, channel) for tag in range(1, 6)]
    await acknowledge(batch(*messages))
    assert [m.acks for m in messages] == [[], [], [], [], [True]]


async def test_one_ack_per_channel_and_none_on_a_closed_one() -> None:
    lost, new = Channel(closed=True), Channel()
    old_messages = [Message(tag, lost) for tag in (7, 8)]
    new_messages = [Message(tag, new) for tag in (1, 2, 3)]
    await acknowledge(batch(*old_messages, *new_messages))
    assert [m.acks for m in old_messages] == [[], []]
    assert [m.acks for m in new_messages] == [[], [], [True]]


async def test_a_failing_ack_is_left_to_the_broker() -> None:
    channel = Channel()
    message = Message(1, channel)

    async def broken(multiple: bool = False) -> Any:
        raise ConnectionError("gone")

    message.ack = broken  # type: ignore[method-assign]
    await acknowledge(batch(message))  # no exception: the broker sends it again
