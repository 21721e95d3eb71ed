"""A real SLIM app (slim-bindings) in its own process, driven step by step by a driver.

    python realpeer.py --worker ROLE --node URL --name org/ns/app

Used by the drivers that put our client (`slim-client`) next to real apps. Commands are JSON
lines on stdin, events JSON lines on stdout (slimapp.Worker speaks this). Every wait is bounded.

Commands (one session per worker):
  {"cmd": "listen"}                                 wait for a session (p2p or group invite) -> "joined"
  {"cmd": "open", "peer": NAME}                     open a reliable MLS p2p session to NAME -> "joined"
  {"cmd": "group", "channel": CH, "invite": [..]}   create a reliable MLS group on CH, invite each
                                                    in order ("invited" after each) -> "joined"
  {"cmd": "send", "prefix": P, "count": N [, "after_first": true]}
                                                    publish "P:0".."P:N-1" (each awaited) -> "sent";
                                                    after_first: only once a first message arrived
  {"cmd": "remove", "who": NAME}                    moderator: remove NAME from the group -> "removed"
  {"cmd": "wait_for", "prefix": P, "count": N [, "timeout": S]}
                                                    wait until N messages starting with "P:" arrived
                                                    (bounded; never an error) -> "waited"
  {"cmd": "report"}                                 -> "report" with every received payload text, the
                                                    session-end flag and per-message senders
  {"cmd": "quit"}                                   exit
"""

import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import slimapp  # noqa: E402

TIMEOUT = 60


async def worker(node, me):
    cmds = slimapp.Commands()
    _service, app, conn_id = await slimapp.start_app(node, me)
    slimapp.emit("ready", name=me)
    session = None
    received = []  # (payload text, sender name) in arrival order
    ended = asyncio.Event()
    first = asyncio.Event()
    tasks = []

    async def receive():
        while True:
            try:
                msg = await session.get_message_async(slimapp.seconds(0.5))
            except Exception as e:
                if slimapp.is_timeout(e):
                    continue
                # The session is gone (removed, closed by the peer): note it, keep the app alive.
                slimapp.emit("session_end", reason=f"{type(e).__name__}: {e}")
                ended.set()
                return
            received.append((msg.payload.decode(errors="replace"), slimapp.full_name(msg.context.source_name)))
            first.set()

    def background(coro):
        """Runs `coro` as a task; an exception in it becomes an error event (never silent)."""
        task = asyncio.create_task(coro)

        def done(t):
            if not t.cancelled() and t.exception() is not None:
                e = t.exception()
                slimapp.emit("error", message=f"{type(e).__name__}: {e}")

        task.add_done_callback(done)
        tasks.append(task)

    def joined():
        slimapp.emit("joined", session_id=session.session_id())
        background(receive())

    async def send(prefix, count, after_first):
        errors = []
        if after_first:
            await asyncio.wait_for(first.wait(), TIMEOUT)
        for i in range(count):
            try:
                await asyncio.wait_for(session.publish_and_wait_async(f"{prefix}:{i}".encode(), None, None), TIMEOUT)
            except Exception as e:  # a message not acknowledged: reported, the driver judges
                errors.append(f"{prefix}:{i}: {type(e).__name__}: {e}")
        slimapp.emit("sent", prefix=prefix, count=count, errors=errors[:10], error_count=len(errors))

    while True:
        cmd = await cmds.next(TIMEOUT * 5)
        c = cmd["cmd"]
        if c == "listen":
            session = await app.listen_for_session_async(slimapp.seconds(TIMEOUT))
            joined()
        elif c == "open":
            await app.set_route_async(slimapp.name(cmd["peer"]), conn_id)
            session = await asyncio.wait_for(
                app.create_session_and_wait_async(slimapp.session_config(group=False), slimapp.name(cmd["peer"])),
                TIMEOUT,
            )
            joined()
        elif c == "group":
            session = await asyncio.wait_for(
                app.create_session_and_wait_async(slimapp.session_config(group=True), slimapp.name(cmd["channel"])),
                TIMEOUT,
            )
            for who in cmd["invite"]:
                await app.set_route_async(slimapp.name(who), conn_id)
                await asyncio.wait_for(session.invite_and_wait_async(slimapp.name(who)), TIMEOUT)
                slimapp.emit("invited", who=who)
            joined()
        elif c == "send":
            # In the background, so the driver can start several senders at once.
            background(send(cmd["prefix"], cmd["count"], cmd.get("after_first", False)))
        elif c == "remove":
            await asyncio.wait_for(session.remove_and_wait_async(slimapp.name(cmd["who"])), TIMEOUT)
            slimapp.emit("removed", who=cmd["who"])
        elif c == "wait_for":
            loop = asyncio.get_running_loop()
            deadline = loop.time() + cmd.get("timeout", TIMEOUT)
            want = cmd["prefix"] + ":"
            while loop.time() < deadline:
                if sum(1 for text, _ in received if text.startswith(want)) >= cmd["count"]:
                    break
                await asyncio.sleep(0.05)
            slimapp.emit("waited", prefix=cmd["prefix"], got=sum(1 for t, _ in received if t.startswith(want)))
        elif c == "report":
            slimapp.emit(
                "report",
                received=[text for text, _ in received],
                senders=[sender for _, sender in received],
                session_ended=ended.is_set(),
            )
        elif c in ("quit", "eof"):
            for t in tasks:
                t.cancel()
            return
        else:
            raise ValueError(f"unknown command {c!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--worker", help="role label (slimapp.Worker passes it)")
    args = ap.parse_args()
    slimapp.run_worker(lambda: worker(args.node, args.name))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
