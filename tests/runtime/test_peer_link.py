"""The children's Unix-socket links (``runtime.peer_link``): a local stranger that connects
to a child's abstract address can neither hold up its turns nor switch the links off."""

from __future__ import annotations

import os
import queue
import socket
import time

from weirflow.runtime.peer_link import HANDSHAKE_S
from weirflow.runtime.process_wave_child import Peers, listen

KEY = os.urandom(32)


def _address() -> str:
    return f"\0weirflow-test-{os.getpid()}-{time.monotonic_ns()}"


def _listening() -> tuple[str, queue.SimpleQueue[bytes | None]]:
    address, inbox = _address(), queue.SimpleQueue[bytes | None]()
    listen(address, KEY, inbox)
    return address, inbox


def test_a_caller_that_connects_and_says_nothing_holds_up_no_turn() -> None:
    address, inbox = _listening()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(address)  # a local process that connects and never answers the challenge
    try:
        began = time.monotonic()
        assert Peers(KEY).send(address, b"turn")
        assert inbox.get(timeout=10) == b"turn"
        assert time.monotonic() - began < 10  # (multiprocessing's Listener: never)
    finally:
        silent.close()


def test_a_caller_that_connects_and_goes_or_has_the_wrong_key_does_not_end_the_listener() -> None:
    address, inbox = _listening()
    for _ in range(3):
        gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        gone.connect(address)
        gone.close()  # (the listener's challenge then fails with an OSError)
    assert not Peers(b"wrong key").send(address, b"forged")
    assert Peers(KEY).send(address, b"turn")
    assert inbox.get(timeout=10) == b"turn"
    assert inbox.empty()  # nothing of the caller with the wrong key


def test_dialling_an_address_nobody_answers_on_gives_up_within_the_handshake_time() -> None:
    address = _address()
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(address)
    mute.listen(1)  # listens, never accepts nor answers: a name taken over by a stranger
    try:
        began = time.monotonic()
        assert not Peers(KEY).send(address, b"turn")  # the parent passes that turn instead
        assert time.monotonic() - began < HANDSHAKE_S * 4 + 5
    finally:
        mute.close()
