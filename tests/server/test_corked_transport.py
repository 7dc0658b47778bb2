"""A response goes to the socket in one write: ``CorkedTransport`` over a real socket."""

from __future__ import annotations

import asyncio
import socket

from weirflow.server.connections import CorkedTransport


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    return transport, peer


def _read(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


async def test_writes_of_one_loop_pass_leave_together_when_flushed() -> None:
    transport, peer = await _pair()
    corked = CorkedTransport(transport, asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"")  # (nothing to send: h11's end of a sized body)
    corked.write(b"ok")
    assert _read(peer) == b""  # held back until the response is complete
    assert corked.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    corked.flush()
    assert _read(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    corked.close()
    peer.close()


async def test_a_streaming_part_goes_out_at_the_end_of_the_loop_pass() -> None:
    transport, peer = await _pair()
    corked = CorkedTransport(transport, asyncio.get_running_loop())
    corked.write(b"event: status\n\n")  # an event stream's part, no flush coming
    await asyncio.sleep(0)
    assert _read(peer) == b"event: status\n\n"
    corked.close()
    peer.close()


async def test_close_sends_what_is_held_first() -> None:
    transport, peer = await _pair()
    corked = CorkedTransport(transport, asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
    corked.close()
    assert corked.is_closing()
    assert _read(peer) == b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"
    peer.close()
