#!/usr/bin/env python
"""The floor for bench_capacity.py: the least a Trio server can spend per echoed frame.

The same message handling as the other bare servers (scripts/echo_handling.py), with
everything between it and the socket cut to what Trio cannot do without:

* a raw ``trio.socket`` listener; the descriptor is read and written directly by the
  engine's own functions (callengine/call/sockio.py: ``wait_readable``/``wait_writable``
  only on EAGAIN), so no SocketStream trips;
* the HTTP upgrade and the frames by the ``websockets`` library's sans-I/O protocol (the
  engine's frame layer too);
* ``--tasks 1`` (the default): one task per connection reads, parses, handles, frames and
  writes: no hand-off at all;
* ``--tasks 3``: the engine's layout with none of its work: a reader task (read, parse,
  ``send_nowait`` into a memory channel), an agent task (the handling) and a writer task
  (frame, write), talking over two memory channels, in one nursery per call.

No pacing, no ledger, no VAD, no marks; fragmented messages are not put together (the load
generator sends whole messages). Whatever a Trio engine with reader, agent and
writer tasks does per frame costs at least what ``--tasks 3`` costs.

    python scripts/bare_echo_trio_floor.py --port 8093 [--tasks 3]
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio
from echo_handling import KNOWLARITY_SUBPROTOCOL, MAX_MESSAGE, EchoSession, tune_gc
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from callengine.call.sockio import receive_some, send_all

READ_SIZE = 65536


async def read_some(sock: trio.socket.SocketType) -> bytes:
    return (await receive_some(sock, READ_SIZE))[0]


async def write_all(sock: trio.socket.SocketType, chunks: list[bytes]) -> None:
    for data in chunks:
        await send_all(sock, data)


def _select(protocol: ServerProtocol, offered) -> str | None:
    return KNOWLARITY_SUBPROTOCOL if KNOWLARITY_SUBPROTOCOL in offered else None


async def handshake(sock: trio.socket.SocketType) -> tuple[ServerProtocol, EchoSession, list] | None:
    """Accept the upgrade; the protocol, the call's session and any frames that came with it."""
    protocol = ServerProtocol(select_subprotocol=_select, max_size=MAX_MESSAGE)
    while True:
        data = await read_some(sock)
        if not data:
            return None
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            request = events[0]
            assert isinstance(request, Request)
            protocol.send_response(protocol.accept(request))
            await write_all(sock, protocol.data_to_send())
            return protocol, EchoSession(request.path), events[1:]


def messages(events) -> list[str | bytes]:
    out: list[str | bytes] = []
    for frame in events:
        if frame.opcode is Opcode.TEXT:
            out.append(frame.data.decode("utf-8"))
        elif frame.opcode is Opcode.BINARY:
            out.append(frame.data)
    return out


async def one_task(sock, protocol: ServerProtocol, session: EchoSession, pending) -> None:
    queue = messages(pending)
    while True:
        for message in queue:
            reply = session.handle(message)
            if reply is not None:
                protocol.send_text(reply.encode("ascii"))
            if session.done:
                protocol.send_close(1000)
                await write_all(sock, protocol.data_to_send())
                return
        await write_all(sock, protocol.data_to_send())  # replies, pongs, the close's echo
        if protocol.close_expected():
            return
        data = await read_some(sock)
        if not data:
            return
        protocol.receive_data(data)
        queue = messages(protocol.events_received())


async def three_tasks(sock, protocol: ServerProtocol, session: EchoSession, pending) -> None:
    to_agent, agent_in = trio.open_memory_channel[str | bytes](64)
    # to the writer: a reply to frame, bytes the protocol framed itself (a pong, the close's
    # echo: the writer is the only task that writes), or None for the end
    to_writer, writer_in = trio.open_memory_channel[tuple[bool, bytes] | None](64)

    async def reader() -> None:
        for message in messages(pending):
            to_agent.send_nowait(message)
        while True:
            data = await read_some(sock)
            if not data:
                break
            protocol.receive_data(data)
            for message in messages(protocol.events_received()):
                to_agent.send_nowait(message)
            control = protocol.data_to_send()
            if control:
                to_writer.send_nowait((False, b"".join(control)))
            if protocol.close_expected():
                to_writer.send_nowait(None)
                return
        nursery.cancel_scope.cancel()

    async def agent() -> None:
        async for message in agent_in:
            reply = session.handle(message)
            if reply is not None:
                to_writer.send_nowait((True, reply.encode("ascii")))
            if session.done:
                to_writer.send_nowait(None)
                return

    async def writer() -> None:
        async for item in writer_in:
            if item is None:
                if not protocol.close_expected():
                    protocol.send_close(1000)
                await write_all(sock, protocol.data_to_send())
                nursery.cancel_scope.cancel()
                return
            framed, data = item
            if framed:
                protocol.send_text(data)
                await write_all(sock, protocol.data_to_send())
            else:
                await write_all(sock, [data])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(agent)
        nursery.start_soon(writer)


async def connection(sock: trio.socket.SocketType, tasks: int) -> None:
    with sock:
        try:
            accepted = await handshake(sock)
            if accepted is not None:
                await (one_task if tasks == 1 else three_tasks)(sock, *accepted)
        except (OSError, ValueError, trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError, AssertionError):
            return  # this connection only


async def main(host: str, port: int, tasks: int) -> None:
    listener = trio.socket.socket()
    listener.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    await listener.bind((host, port))
    listener.listen(1024)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def accept_loop() -> None:
                while True:
                    sock, _ = await listener.accept()
                    sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
                    nursery.start_soon(connection, sock, tasks)

            nursery.start_soon(accept_loop)
            print(f"trio floor echo server ({tasks} task{'s' if tasks > 1 else ''} per call) listening on ws://{host}:{port}", flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8093)
    p.add_argument("--tasks", type=int, choices=(1, 3), default=1)
    args = p.parse_args()
    tune_gc()
    try:
        trio.run(main, args.host, args.port, args.tasks)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
