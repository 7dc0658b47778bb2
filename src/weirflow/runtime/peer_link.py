"""Authenticated Unix-socket links between the process pool's children (``process_wave_child``).

An abstract Unix socket has no file permissions: any local process in the network
namespace can connect to it. ``multiprocessing.connection.Listener`` with an ``authkey``
keeps such a stranger from sending anything, but its key exchange waits with no timeout
(a caller that connects and says nothing held the accept loop, and with it every turn
sent to that child, for ever), and one connection that fails the exchange with an
``OSError`` ended the loop. So the exchange is done here (with ``multiprocessing``'s own
``deliver_challenge`` / ``answer_challenge``):

- a connection whose peer runs as another user (``SO_PEERCRED``) is closed at once, both
  ways: the dialling child checks whom it reached too (a name taken over after a child
  died);
- the key exchange runs under a kernel timeout on the socket (``SO_RCVTIMEO`` /
  ``SO_SNDTIMEO``, ``HANDSHAKE_S``), on the connection's own thread for an accepted one;
- a connection that fails in any way is closed and the listener goes on accepting; it
  stops only when its own socket is gone.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError, connection

#: the longest a key exchange (or a connect to a full backlog) may take
HANDSHAKE_S = 0.5
_TIMEVAL = "ll"  # struct timeval: seconds, microseconds
_UCRED = "3i"  # struct ucred: pid, uid, gid


def _same_user(sock: socket.socket) -> bool:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(_UCRED))
    _pid, uid, _gid = struct.unpack(_UCRED, creds)
    return bool(uid == os.getuid())


def _timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel send and receive timeouts (0: none); the socket stays in blocking mode, as
    ``multiprocessing.connection.Connection``'s ``os.read``/``os.write`` need."""
    value = struct.pack(_TIMEVAL, int(seconds), int((seconds % 1) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _linked(sock: socket.socket, authkey: bytes, *, dialled: bool) -> connection.Connection:
    """``sock`` as an authenticated ``Connection`` (``OSError``/``AuthenticationError`` if not)."""
    if not _same_user(sock):
        raise AuthenticationError("the peer runs as another user")
    _timeouts(sock, HANDSHAKE_S)
    conn = connection.Connection(os.dup(sock.fileno()))
    try:
        if dialled:  # (the order of ``multiprocessing.connection.Client``)
            connection.answer_challenge(conn, authkey)
            connection.deliver_challenge(conn, authkey)
        else:
            connection.deliver_challenge(conn, authkey)
            connection.answer_challenge(conn, authkey)
        _timeouts(sock, 0)
    except BaseException:
        conn.close()
        raise
    return conn


def dial(address: str, authkey: bytes) -> connection.Connection:
    """An authenticated connection to the child listening at ``address``; ``OSError``,
    ``EOFError`` or ``AuthenticationError`` within about ``HANDSHAKE_S`` if there is none."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _timeouts(sock, HANDSHAKE_S)  # (a connect to a full backlog waits SO_SNDTIMEO)
        sock.connect(address)
        return _linked(sock, authkey, dialled=True)


def serve(address: str, authkey: bytes, handle: Callable[[connection.Connection], None]) -> bool:
    """Listen at ``address``; call ``handle(conn)`` on a thread of its own for each caller
    that passes the checks. ``False`` if ``address`` cannot be listened on."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
        listener.listen(64)
    except OSError:
        listener.close()
        return False

    def one(sock: socket.socket) -> None:
        try:
            with sock:
                conn = _linked(sock, authkey, dialled=False)
        except (OSError, EOFError, AuthenticationError):
            return  # (not one of ours, or gone: the others are not held up)
        handle(conn)

    def accept() -> None:
        with listener:
            while True:
                try:
                    sock, _ = listener.accept()
                except (ConnectionAbortedError, InterruptedError):  # (that caller gave up)
                    continue
                except OSError:  # (the listening socket is gone, or no fd is left: the
                    return  # parent passes the turns, as without a listener)
                try:
                    threading.Thread(target=one, args=(sock,), name="weirflow-peer", daemon=True).start()
                except RuntimeError:  # (no more threads: that caller only is turned away)
                    sock.close()

    threading.Thread(target=accept, name="weirflow-peer-listener", daemon=True).start()
    return True
