"""A stand-in for our `slim-client` built on the real SDK (slim-bindings): the control experiment.

The drivers that test our client (`--ours PATH`) run this instead when given `--ours real`, so the
very same scenario, the same command lines and the same `--json` event parsing run with a real
SLIM app in our client's place. It implements the subset of the CLI contract the drivers use:

    slim_client_real.py --json --name N --secret S --node URL [--timeout SECS] SUBCOMMAND ...
      send NAME MESSAGE... [--mls] [--reliable] [--expect N]
      listen [--echo] [--count N] [--stdin]
      group CHANNEL [--invite NAME]... [--mls] [--reliable]      (stdin: `remove NAME` or a message)

`listen --stdin` is the proposed addition to the contract: each stdin line is published on the
most recently joined session (lines are queued until there is one; EOF stops reading, the
listener keeps running). Events are those of the contract (ready, session, message, delivered,
member_joined, member_left, removed, closed, error, done), one JSON object per line.

Known differences from slim-client, all forced by the SDK's API: `message_id` in "delivered" is
the 0-based index of the message on that session (the SDK does not expose SLIM message ids);
a group session that ends for a participant is reported as "removed" (the SDK does not say why
it ended); global options must come before the subcommand.
"""

import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import slimapp  # noqa: E402

JSON = False


def out(event, **fields):
    if JSON:
        slimapp.emit(event, **fields)
    elif event == "message":
        sender = "/".join(fields["from"].split("/")[:3])
        slimapp.emit_line(f"{sender} {fields['text']}")
    else:
        print(f"{event} {json.dumps(fields)}", file=sys.stderr, flush=True)


class Session:
    """One SDK session with its receive loop and the contract's events."""

    def __init__(self, session, group, initiator, peer, timeout, echo=False):
        self.s = session
        self.id = session.session_id()
        self.group = group
        self.initiator = initiator
        self.timeout = timeout
        self.echo = echo
        self.received = 0
        self.sent = 0
        self.ended = asyncio.Event()
        self.closing = False
        out("session", session=self.id, peer=peer, group=group, initiator=initiator)

    async def publish(self, data):
        index = self.sent
        self.sent += 1
        try:
            await asyncio.wait_for(self.s.publish_and_wait_async(data, None, None), self.timeout)
        except Exception as e:
            out("send_failed", session=self.id, message_id=index, peer=str(e))
            raise
        out("delivered", session=self.id, message_id=index)

    async def receive(self, on_message=None):
        while True:
            try:
                msg = await self.s.get_message_async(slimapp.seconds(0.5))
            except Exception as e:
                if slimapp.is_timeout(e):
                    continue
                if not self.closing:
                    if self.group and not self.initiator:
                        out("removed", session=self.id)
                    else:
                        out("closed", session=self.id, reason=f"{type(e).__name__}: {e}")
                self.ended.set()
                return
            self.received += 1
            fields = {"session": self.id, "from": slimapp.full_name(msg.context.source_name)}
            out("message", **fields, text=msg.payload.decode(errors="replace"))
            if self.echo:
                await self.publish(msg.payload)
            if on_message:
                on_message()


async def wait_until(pred, timeout, what):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} within {timeout}s")
        await asyncio.sleep(0.02)


async def close(app, sess, timeout):
    sess.closing = True
    try:
        await asyncio.wait_for(app.delete_session_and_wait_async(sess.s), timeout)
    except Exception as e:  # the peer may have closed first
        out("closed", session=sess.id, reason=f"close: {type(e).__name__}: {e}")
        return
    out("closed", session=sess.id, reason="closed by us")


async def cmd_send(a, app, conn_id):
    await app.set_route_async(slimapp.name(a.peer), conn_id)
    s = await asyncio.wait_for(
        app.create_session_and_wait_async(
            slimapp.session_config(group=False, mls=a.mls, reliable=a.reliable), slimapp.name(a.peer)
        ),
        a.timeout,
    )
    sess = Session(s, group=False, initiator=True, peer=a.peer, timeout=a.timeout)
    rx = asyncio.create_task(sess.receive())
    for m in a.messages:
        await sess.publish(m.encode())
    await wait_until(lambda: sess.received >= a.expect, a.timeout, f"{a.expect} messages received")
    rx.cancel()
    await close(app, sess, a.timeout)


async def cmd_listen(a, app, conn_id):
    sessions = []
    total = [0]
    lines = slimapp.StdinLines() if a.stdin else None

    def counted():
        total[0] += 1

    async def feed():
        while True:
            line = await lines.queue.get()
            if line is None:
                return
            await wait_until(lambda: sessions, a.timeout * 10, "a session for the stdin line")
            await sessions[-1].publish(line.encode())

    feeder = asyncio.create_task(feed()) if lines else None
    tasks = []
    while a.count is None or total[0] < a.count:
        try:
            s = await app.listen_for_session_async(slimapp.seconds(0.5))
        except Exception as e:
            if slimapp.is_timeout(e):
                continue
            raise
        group = s.session_type() == slimapp.slim.SessionType.GROUP
        try:
            peer = slimapp.full_name(s.destination())
        except Exception:
            peer = "?"
        sess = Session(s, group=group, initiator=False, peer=peer, timeout=a.timeout, echo=a.echo)
        sessions.append(sess)
        tasks.append(asyncio.create_task(sess.receive(counted)))
    # --count reached: the echo of the last message is published (and acked) inside receive().
    await asyncio.sleep(0.5)
    for t in tasks:
        t.cancel()
    if feeder:
        feeder.cancel()


async def cmd_group(a, app, conn_id):
    s = await asyncio.wait_for(
        app.create_session_and_wait_async(
            slimapp.session_config(group=True, mls=a.mls, reliable=a.reliable), slimapp.name(a.channel)
        ),
        a.timeout,
    )
    sess = Session(s, group=True, initiator=True, peer=a.channel, timeout=a.timeout)
    for who in a.invite:
        await app.set_route_async(slimapp.name(who), conn_id)
        await asyncio.wait_for(s.invite_and_wait_async(slimapp.name(who)), a.timeout)
        out("member_joined", session=sess.id, member=who)
    rx = asyncio.create_task(sess.receive())
    lines = slimapp.StdinLines()
    while True:
        line = await lines.queue.get()
        if line is None:
            break
        if line.startswith("remove "):
            who = line[len("remove "):].strip()
            await asyncio.wait_for(s.remove_and_wait_async(slimapp.name(who)), a.timeout)
            out("member_left", session=sess.id, member=who)
        elif line:
            await sess.publish(line.encode())
    rx.cancel()
    await close(app, sess, a.timeout)


def parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default="http://127.0.0.1:46357")
    ap.add_argument("--name", required=True)
    ap.add_argument("--secret", default=slimapp.SECRET)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--timeout", type=float, default=30)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("peer")
    s.add_argument("messages", nargs="+")
    s.add_argument("--mls", action="store_true")
    s.add_argument("--reliable", action="store_true")
    s.add_argument("--expect", type=int, default=0)
    li = sub.add_parser("listen")
    li.add_argument("--echo", action="store_true")
    li.add_argument("--count", type=int)
    li.add_argument("--stdin", action="store_true")
    g = sub.add_parser("group")
    g.add_argument("channel")
    g.add_argument("--invite", action="append", default=[])
    g.add_argument("--mls", action="store_true")
    g.add_argument("--reliable", action="store_true")
    return ap.parse_args()


async def run(a):
    _service, app, conn_id = await slimapp.start_app(a.node, a.name, a.secret)
    out("ready", name=slimapp.full_name(app.name()))
    await {"send": cmd_send, "listen": cmd_listen, "group": cmd_group}[a.cmd](a, app, conn_id)
    out("done")


def main():
    global JSON
    a = parse()
    JSON = a.json
    slimapp.private_stdout()  # stdout: our events only; the SDK's logs go to stderr
    try:
        asyncio.run(run(a))
    except Exception as e:
        out("error", message=f"{type(e).__name__}: {e}")
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
