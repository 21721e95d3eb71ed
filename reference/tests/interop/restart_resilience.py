"""Two real SLIM apps that must survive restarts of the node under them, driven from stdin.

alice and bob (one process each) connect to --node; alice opens a reliable point-to-point session
to bob. Then the driver reads JSON commands on stdin, one per line:
  {"cmd": "exchange", "tag": K}  alice sends "K:<attempt>" until bob has received one message
                                 with tag K (each attempt a reliable publish, bounded); prints
                                 {"event": "exchanged", "tag": K, "attempts": n, "seconds": s}
                                 or {"event": "failed", "tag": K, "error": ...}
  {"cmd": "quit"}                stops the apps
The test restarts the node between exchanges. The SDK reconnects only when its reconnect attempt
is refused (the node's listener closed) and gives up for good on a reset, so an exchange after a
restart passes only if the node shut down in the right order.

Last stdout line: a JSON summary {"scenario": "restart_resilience", "ok": bool, "exchanges": [...]}.
"""

import argparse
import asyncio
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import slimapp  # noqa: E402

ALICE = "org/interop/alice-restart"
BOB = "org/interop/bob-restart"
TIMEOUT = 60  # seconds, for each bounded wait below
EXCHANGE_BOUND = 45  # seconds for one exchange across a restart (the SDK backs off up to ~10 s)


def emit_top(event, **fields):
    fields["event"] = event
    print(json.dumps(fields), flush=True)


async def worker(role, node):
    me, peer = (ALICE, BOB) if role == "alice" else (BOB, ALICE)
    cmds = slimapp.Commands()
    _service, app, conn_id = await slimapp.start_app(node, me)
    slimapp.emit("ready")
    if role == "alice":
        await cmds.next(TIMEOUT)  # "go": bob is subscribed
        await app.set_route_async(slimapp.name(peer), conn_id)
        session = await asyncio.wait_for(
            app.create_session_and_wait_async(slimapp.session_config(False, mls=False), slimapp.name(peer)),
            TIMEOUT,
        )
        slimapp.emit("session")
        while True:
            cmd = await cmds.next(3600)
            if cmd.get("cmd") in ("quit", "eof"):
                return
            if cmd.get("cmd") == "send":
                try:
                    await asyncio.wait_for(
                        session.publish_and_wait_async(cmd["text"].encode(), None, None), cmd["bound"]
                    )
                    slimapp.emit("sent", text=cmd["text"])
                except Exception as e:  # noqa: BLE001 - reported, the driver decides
                    slimapp.emit("send_failed", text=cmd["text"], error=f"{type(e).__name__}: {e}")
    else:
        session = await app.listen_for_session_async(slimapp.seconds(TIMEOUT))
        slimapp.emit("session")
        while True:
            try:
                msg = await session.get_message_async(slimapp.seconds(1))
            except Exception:
                continue  # a poll timeout; the driver bounds the waits
            slimapp.emit("received", text=msg.payload.decode(errors="replace"))


async def exchange(alice, bob, tag):
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + EXCHANGE_BOUND
    attempts = 0
    errors = []
    while loop.time() < deadline:
        attempts += 1
        text = f"{tag}:{attempts}"
        await alice.send(cmd="send", text=text, bound=5)
        # Wait for bob to receive any attempt of this tag, or for alice's verdict on this attempt.
        while loop.time() < deadline:
            try:
                line = await asyncio.wait_for(
                    first_event(alice, bob), max(0.1, min(6, deadline - loop.time()))
                )
            except asyncio.TimeoutError:
                break
            who, ev = line
            if who == "bob" and ev.get("event") == "received" and ev["text"].split(":")[0] == str(tag):
                return {"tag": tag, "attempts": attempts, "seconds": round(loop.time() - start, 3)}
            if who == "alice" and ev.get("event") == "send_failed":
                errors.append(ev["error"])
                await asyncio.sleep(0.5)
                break
    raise RuntimeError(f"tag {tag}: bob received nothing in {EXCHANGE_BOUND}s ({attempts} attempts; alice: {errors[-3:]})")


_pending = {}


async def first_event(alice, bob):
    """The next event of either worker (the other's read stays pending for the next call)."""
    for w in (alice, bob):
        if w.role not in _pending:
            _pending[w.role] = asyncio.ensure_future(next_event(w))
    done, _ = await asyncio.wait(list(_pending.values()), return_when=asyncio.FIRST_COMPLETED)
    for role, fut in list(_pending.items()):
        if fut in done:
            del _pending[role]
            return role, fut.result()
    raise RuntimeError("no event")


async def next_event(w):
    while True:
        line = await w.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{w.role} exited (code {w.proc.returncode})")
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == "error":
            raise RuntimeError(f"{w.role}: {ev.get('message')}")
        return ev


async def driver(node):
    script = os.path.abspath(__file__)
    workers = []
    summary = {"scenario": "restart_resilience", "ok": False, "node": node, "exchanges": []}
    try:
        bob = await slimapp.Worker.start(script, "bob", ["--node", node])
        workers.append(bob)
        alice = await slimapp.Worker.start(script, "alice", ["--node", node])
        workers.append(alice)
        await bob.expect("ready", TIMEOUT)
        await alice.expect("ready", TIMEOUT)
        await alice.send(cmd="go")
        await alice.expect("session", TIMEOUT)
        await bob.expect("session", TIMEOUT)
        emit_top("ready")
        commands = slimapp.Commands()
        while True:
            cmd = await commands.next(3600)
            if cmd.get("cmd") in ("quit", "eof"):
                break
            if cmd.get("cmd") == "exchange":
                try:
                    result = await exchange(alice, bob, cmd["tag"])
                    summary["exchanges"].append(result)
                    emit_top("exchanged", **result)
                except Exception as e:  # noqa: BLE001 - reported to the test
                    summary["error"] = str(e)
                    emit_top("failed", tag=cmd["tag"], error=str(e))
                    break
        summary["ok"] = "error" not in summary
    except Exception as e:  # noqa: BLE001
        summary["error"] = str(e)
    finally:
        for fut in _pending.values():
            fut.cancel()
        await slimapp.stop_all(workers)
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True, help="SLIM node URL, e.g. http://127.0.0.1:46357")
    ap.add_argument("--worker", choices=["alice", "bob"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        slimapp.run_worker(lambda: worker(args.worker, args.node))
        sys.stdout.flush()
        os._exit(0)
    code = asyncio.run(driver(args.node))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
