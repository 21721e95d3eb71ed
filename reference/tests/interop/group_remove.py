"""Group session of three real SLIM apps (MLS on) through --node, then removal of one member.

The moderator (one process) creates a group session on a channel, invites two participants (two
more processes), and all three send messages (phase 1). The moderator then removes participant
p2, and the moderator and p1 send more messages (phase 2). Checks: in phase 1 every member got
every other member's messages exactly once; in phase 2 the moderator and p1 got each other's
messages, and p2 got nothing at all after its removal.

Last stdout line: a JSON summary
  {"scenario": "group_remove", "ok": bool, "members": {role: {"phase1_received", "phase2_received",
   "duplicates"}}, "removed_received_after_removal": n, "removed_saw_session_end": bool}
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

NAMES = {"moderator": "org/interop/moderator", "p1": "org/interop/p1", "p2": "org/interop/p2"}
CHANNEL = "org/interop/group-channel"
K = 10  # messages each member sends per phase
TIMEOUT = 60


async def worker(role, node):
    cmds = slimapp.Commands()
    _service, app, conn_id = await slimapp.start_app(node, NAMES[role])
    slimapp.emit("ready")
    if role == "moderator":
        await cmds.next(TIMEOUT)  # "go": participants are subscribed
        for p in ("p1", "p2"):
            await app.set_route_async(slimapp.name(NAMES[p]), conn_id)
        config = slimapp.slim.SessionConfig(
            session_type=slimapp.slim.SessionType.GROUP,
            max_retries=5,
            interval=slimapp.seconds(1),
            metadata={},
            mls_settings=slimapp.mls_settings(),
        )
        session = await asyncio.wait_for(
            app.create_session_and_wait_async(config, slimapp.name(CHANNEL)), TIMEOUT
        )
        for p in ("p1", "p2"):
            await asyncio.wait_for(session.invite_and_wait_async(slimapp.name(NAMES[p])), TIMEOUT)
    else:
        session = await app.listen_for_session_async(slimapp.seconds(TIMEOUT))
    slimapp.emit("joined", session_id=session.session_id())

    received = []  # payload texts, in arrival order
    ended = asyncio.Event()

    async def receive():
        while True:
            try:
                msg = await session.get_message_async(slimapp.seconds(0.5))
            except Exception as e:
                text = str(e).lower()
                if "timeout" in text or "timed out" in text:
                    continue
                # The session is gone (removed, closed): note it, and keep the app alive.
                slimapp.emit("session_end", reason=f"{type(e).__name__}: {e}")
                ended.set()
                return
            received.append(msg.payload.decode(errors="replace"))

    recv_task = asyncio.create_task(receive())
    while True:
        cmd = await cmds.next(TIMEOUT * 3)
        if cmd["cmd"] == "send":
            for i in range(K):
                await session.publish_and_wait_async(f"{cmd['phase']}:{role}:{i}".encode(), None, None)
            slimapp.emit("sent", phase=cmd["phase"])
        elif cmd["cmd"] == "remove":
            await asyncio.wait_for(session.remove_and_wait_async(slimapp.name(NAMES[cmd["who"]])), TIMEOUT)
            slimapp.emit("removed", who=cmd["who"])
        elif cmd["cmd"] == "wait_for":
            # Wait (bounded) until `count` messages of `phase` from others have arrived.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + cmd.get("timeout", TIMEOUT)
            while loop.time() < deadline:
                if sum(1 for r in received if r.startswith(cmd["phase"] + ":")) >= cmd["count"]:
                    break
                await asyncio.sleep(0.05)
            slimapp.emit("waited", phase=cmd["phase"])
        elif cmd["cmd"] == "report":
            slimapp.emit("report", received=received, session_ended=ended.is_set())
        elif cmd["cmd"] in ("quit", "eof"):
            recv_task.cancel()
            return


def member_stats(received, role, phase, senders):
    want = {f"{phase}:{s}:{i}" for s in senders if s != role for i in range(K)}
    got = [r for r in received if r.startswith(phase + ":")]
    return {
        "received": len(set(got) & want),
        "expected": len(want),
        "unexpected": sorted(set(got) - want)[:10],
        "duplicates": len(got) - len(set(got)),
    }


async def driver(node):
    script = os.path.abspath(__file__)
    workers = {}
    summary = {"scenario": "group_remove", "ok": False, "node": node, "messages_per_member_per_phase": K}
    try:
        for role in ("p1", "p2", "moderator"):
            workers[role] = await slimapp.Worker.start(script, role, ["--node", node])
        for w in workers.values():
            await w.expect("ready", TIMEOUT)
        mod, p1, p2 = workers["moderator"], workers["p1"], workers["p2"]
        await mod.send(cmd="go")
        for w in (mod, p1, p2):
            await w.expect("joined", TIMEOUT * 2)

        # Phase 1: everybody talks.
        for w in (mod, p1, p2):
            await w.send(cmd="send", phase="phase1")
        for w in (mod, p1, p2):
            await w.expect("sent", TIMEOUT)
        for w in (mod, p1, p2):
            await w.send(cmd="wait_for", phase="phase1", count=2 * K)
            await w.expect("waited", TIMEOUT + 5)

        # Removal of p2 by the moderator.
        await mod.send(cmd="remove", who="p2")
        await mod.expect("removed", TIMEOUT)

        # Phase 2: the moderator and p1 talk; p2 must get nothing.
        for w in (mod, p1):
            await w.send(cmd="send", phase="phase2")
        for w in (mod, p1):
            await w.expect("sent", TIMEOUT)
        for w in (mod, p1):
            await w.send(cmd="wait_for", phase="phase2", count=K)
            await w.expect("waited", TIMEOUT + 5)
        # Give stray deliveries to p2 the same chance (bounded) before asking for its report.
        await p2.send(cmd="wait_for", phase="phase2", count=1, timeout=3)
        await p2.expect("waited", 10)

        reports = {}
        for role, w in workers.items():
            await w.send(cmd="report")
            reports[role] = await w.expect("report", TIMEOUT)
        members = {}
        problems = []
        for role in ("moderator", "p1", "p2"):
            rec = reports[role]["received"]
            s1 = member_stats(rec, role, "phase1", ("moderator", "p1", "p2"))
            # p2 is removed before phase 2: it must receive none of it.
            s2 = member_stats(rec, role, "phase2", ("moderator", "p1") if role != "p2" else ())
            members[role] = {"phase1": s1, "phase2": s2}
            if s1["received"] != s1["expected"] or s1["duplicates"] or s1["unexpected"]:
                problems.append(f"{role} phase1: {s1}")
            if role != "p2" and (s2["received"] != s2["expected"] or s2["duplicates"] or s2["unexpected"]):
                problems.append(f"{role} phase2: {s2}")
        after = sum(1 for r in reports["p2"]["received"] if r.startswith("phase2:"))
        summary["members"] = members
        summary["removed_received_after_removal"] = after
        summary["removed_saw_session_end"] = reports["p2"]["session_ended"]
        if after:
            problems.append(f"removed p2 received {after} messages after its removal")
        summary["ok"] = not problems
        if problems:
            summary["problems"] = problems
    except Exception as e:
        summary["error"] = str(e)
    finally:
        await slimapp.stop_all(list(workers.values()))
    print(json.dumps(summary), flush=True)
    if not summary["ok"]:
        print(f"group_remove FAILED: {summary.get('error') or summary.get('problems')}", file=sys.stderr)
    return 0 if summary["ok"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True, help="SLIM node URL, e.g. http://127.0.0.1:46357")
    ap.add_argument("--worker", choices=list(NAMES), help=argparse.SUPPRESS)
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
