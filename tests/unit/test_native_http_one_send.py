"""The uvicorn server sends a reply's head and body in one write (one wakeup of the
reader on loopback), and never loses or reorders bytes doing so."""

from __future__ import annotations

import asyncio

from scheduler.native_http import _OneSendTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class _Recording(asyncio.Transport):
    """A transport that keeps what is written to it, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_head_and_body_go_out_in_one_write() -> None:
    async def go() -> list[bytes]:
        raw = _Recording()
        t = _OneSendTransport(raw, asyncio.get_running_loop())
        t.write(HEAD)
        t.write(b"{}")
        t.write(HEAD)
        t.write(memoryview(b"[]"))
        await asyncio.sleep(0)
        return raw.writes

    assert asyncio.run(go()) == [HEAD + b"{}", HEAD + b"[]"]


def test_a_head_alone_goes_out_at_the_next_loop_step_and_before_a_close() -> None:
    async def go() -> tuple[list[bytes], list[bytes], bool]:
        loop = asyncio.get_running_loop()
        raw, other = _Recording(), _Recording()
        t = _OneSendTransport(raw, loop)
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert raw.writes == []
        await asyncio.sleep(0)
        u = _OneSendTransport(other, loop)
        u.write(HEAD)
        u.close()
        return raw.writes, other.writes, other.closed

    first, second, closed = asyncio.run(go())
    assert first == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert second == [HEAD] and closed


def test_other_bytes_pass_straight_through_and_abort_drops_a_held_head() -> None:
    async def go() -> list[bytes]:
        raw = _Recording()
        t = _OneSendTransport(raw, asyncio.get_running_loop())
        t.write(b"5\r\nhello\r\n")
        t.write(HEAD)
        t.abort()
        await asyncio.sleep(0)
        return raw.writes

    assert asyncio.run(go()) == [b"5\r\nhello\r\n"]
