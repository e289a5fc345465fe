"""
How wsse's sockets read and write: sooner, and in bigger pieces, than
Twisted's defaults.

A write to a Twisted transport is queued and sent when the next poll reports
the socket writable: one more turn of the reactor for every message a relay
passes on, which is most of a relay's latency when each side waits for the
other.  And a TCP transport reads 64 KiB and sends 128 KiB per system call: a
1 MiB page took about 24 of them through wsse, each with its turn of the
reactor in Python.
"""

from __future__ import annotations

from twisted.internet.interfaces import ITransport, IWriteDescriptor
from twisted.internet.tcp import Connection

# Bytes a read may bring, and a send may take.  A read also allocates this
# much for a moment, and a transport holding more than it unsent pauses its
# producer: 256 KiB (Twisted: 64 KiB) keeps both small.
READ_SIZE = 256 * 1024
SEND_SIZE = 1024 * 1024


def widen(transport: object) -> None:
    """
    Let a TCP transport read L{READ_SIZE} and send L{SEND_SIZE} at a time.

    Measured on a 1 MiB page at 50 connections: 1.4 times the pages per
    second.  Both are attributes of Twisted's C{FileDescriptor}, meant to be
    set per class or instance; other transports (TLS) keep their own.
    """
    if IWriteDescriptor.providedBy(transport) and hasattr(transport, "bufferSize"):
        transport.bufferSize = READ_SIZE
        transport.SEND_LIMIT = SEND_SIZE  # type: ignore[attr-defined]


def flush_now(transport: object) -> None:
    """
    Send what C{transport} holds now, if it is a socket the reactor writes.

    C{doWrite} is the reactor's own call (L{IWriteDescriptor}).  When the send
    fails the bytes stay queued, and the reactor's next C{doWrite} meets the
    same error and ends the connection as it always does; a connection being
    closed is left to the reactor altogether.  Other transports (TLS, test
    doubles) send in their own time.  Measured on the splice (echo, 16
    messages in flight) and on the fallback's round trip, sending at once was
    worth a tenth to a fifth.
    """
    if (
        IWriteDescriptor.providedBy(transport)
        and getattr(transport, "connected", False)
        and not getattr(transport, "disconnecting", True)
    ):
        transport.doWrite()


def send_now(transport: ITransport, data: bytes) -> None:
    """
    Write C{data} and send it at once (see L{flush_now}).

    When the socket has nothing queued, the bytes go straight to the kernel:
    a queued write costs the reactor two more system calls (watching the
    socket for writability, then no longer) and Python around each.  What the
    kernel does not take is queued as any write is, and an error is left for
    the reactor to meet on its next send, as L{flush_now} leaves it.  An
    aborted connection sends nothing more, and a pull producer is asked for
    more only by the reactor's sends, so both take the queued way.  Measured
    on the splice, a 64-byte echo's round trip fell by a quarter.
    """
    if not data:
        return
    if (
        isinstance(transport, Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
        and not transport._aborting
        and not transport.TLS
        and (transport.producer is None or transport.streamingProducer)
        and not transport.dataBuffer
        and not transport._tempDataLen
    ):
        sent = transport.writeSomeData(data)
        if sent == len(data):
            return
        if isinstance(sent, int):
            data = data[sent:]
        transport.write(data)
        return
    transport.write(data)
    flush_now(transport)
