"""Point-to-point session between two real SLIM apps, MLS on, reliable delivery, through --node.

alice (one process) opens a P2P session to bob (another process) with MLS and reliability
(interval 1 s, 5 retries). Then both send --count messages at the same time and each checks that
it received every message of the other exactly once.

Last stdout line: a JSON summary
  {"scenario": "p2p_reliable_mls", "ok": bool, "alice_to_bob": {"sent", "received",
   "duplicates", "missing"}, "bob_to_alice": {...}}
Exit code 0 iff ok.
"""

import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import slimapp  # noqa: E402

ALICE = "org/interop/alice"
BOB = "org/interop/bob"
TIMEOUT = 60  # seconds, for each bounded wait below


async def exchange(session, me, count):
    """Sends `count` messages and receives `count` from the peer, concurrently."""
    received = {}

    async def send():
        for i in range(count):
            await session.publish_and_wait_async(f"{me}:{i}".encode(), None, None)

    async def receive():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while len(received) < count and loop.time() < deadline:
            try:
                msg = await session.get_message_async(slimapp.seconds(1))
            except Exception:
                continue  # timeout of this poll; the deadline bounds the loop
            received[msg.payload] = received.get(msg.payload, 0) + 1
        # Linger briefly so a late duplicate would still be seen.
        end = loop.time() + 1.0
        while loop.time() < end:
            try:
                msg = await session.get_message_async(slimapp.seconds(0.2))
                received[msg.payload] = received.get(msg.payload, 0) + 1
            except Exception:
                pass

    await asyncio.gather(send(), receive())
    return received


def tally(received, sender, count):
    got = {}
    for payload, n in received.items():
        text = payload.decode(errors="replace")
        who, _, seq = text.partition(":")
        if who == sender and seq.isdigit():
            got[int(seq)] = n
    missing = [i for i in range(count) if i not in got]
    return {
        "sent": count,
        "received": len([i for i in got if i < count]),
        "duplicates": sum(n - 1 for n in got.values()),
        "missing": missing[:20],
    }


async def worker(role, node, count):
    me, peer = (ALICE, BOB) if role == "alice" else (BOB, ALICE)
    cmds = slimapp.Commands()
    _service, app, conn_id = await slimapp.start_app(node, me)
    slimapp.emit("ready")
    if role == "alice":
        await cmds.next(TIMEOUT)  # "go": bob is subscribed
        await app.set_route_async(slimapp.name(peer), conn_id)
        config = slimapp.slim.SessionConfig(
            session_type=slimapp.slim.SessionType.POINT_TO_POINT,
            max_retries=5,
            interval=slimapp.seconds(1),
            metadata={},
            mls_settings=slimapp.mls_settings(),
        )
        session = await asyncio.wait_for(
            app.create_session_and_wait_async(config, slimapp.name(peer)), TIMEOUT
        )
    else:
        session = await app.listen_for_session_async(slimapp.seconds(TIMEOUT))
    slimapp.emit("session", session_id=session.session_id())
    received = await exchange(session, role, count)
    slimapp.emit("result", result=tally(received, "bob" if role == "alice" else "alice", count))
    await cmds.next(TIMEOUT)  # "quit": keep the session up until both sides are done


async def driver(node, count):
    script = os.path.abspath(__file__)
    workers = []
    summary = {"scenario": "p2p_reliable_mls", "ok": False, "node": node}
    try:
        bob = await slimapp.Worker.start(script, "bob", ["--node", node, "--count", str(count)])
        workers.append(bob)
        alice = await slimapp.Worker.start(script, "alice", ["--node", node, "--count", str(count)])
        workers.append(alice)
        await bob.expect("ready", TIMEOUT)
        await alice.expect("ready", TIMEOUT)
        await alice.send(cmd="go")
        await alice.expect("session", TIMEOUT)
        await bob.expect("session", TIMEOUT)
        ra = await alice.expect("result", TIMEOUT + 30)
        rb = await bob.expect("result", TIMEOUT + 30)
        summary["alice_to_bob"] = rb["result"]
        summary["bob_to_alice"] = ra["result"]
        problems = []
        for direction in ("alice_to_bob", "bob_to_alice"):
            r = summary[direction]
            if r["received"] != count:
                problems.append(f"{direction}: {r['received']}/{count} delivered, missing {r['missing']}")
            if r["duplicates"]:
                problems.append(f"{direction}: {r['duplicates']} duplicates")
        summary["ok"] = not problems
        if problems:
            summary["problems"] = problems
    except Exception as e:
        summary["error"] = str(e)
    finally:
        await slimapp.stop_all(workers)
    print(json.dumps(summary), flush=True)
    if not summary["ok"]:
        print(f"p2p_reliable_mls FAILED: {summary.get('error') or summary.get('problems')}", file=sys.stderr)
    return 0 if summary["ok"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True, help="SLIM node URL, e.g. http://127.0.0.1:46357")
    ap.add_argument("--count", type=int, default=100, help="messages each way (default 100)")
    ap.add_argument("--worker", choices=["alice", "bob"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        slimapp.run_worker(lambda: worker(args.worker, args.node, args.count))
        sys.stdout.flush()
        os._exit(0)
    code = asyncio.run(driver(args.node, args.count))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
