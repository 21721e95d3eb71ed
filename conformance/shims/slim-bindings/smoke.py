"""Smoke test of a session-profile driver (any implementation) against a real node.

    smoke.py --driver 127.0.0.1:PORT --node http://127.0.0.1:NODEPORT

Checks GetCapabilities; a reliable MLS point-to-point session (AwaitSession + CreateSession, 10
payloads published with wait all OK, the receiver's Events shows them in order with the sender's
full name); a reliable MLS group (moderator + 2 invited, Members lists three, one removed sees its
session end, Members lists two); StateAuth answers UNIMPLEMENTED (unless state_auth); an unknown
app NOT_FOUND; a bad name INVALID_ARGUMENT; an AwaitSession with nothing coming DEADLINE_EXCEEDED;
with jwt_identity, two apps with a jwt_hs256_secret open a reliable MLS point-to-point session and
exchange a message each way. Prints each step with its duration; the exit code is 0 iff every
check passed.
"""

import argparse
import asyncio
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("DRIVER_GEN") or os.path.join(HERE, "../../../target/shims/slim-bindings/gen"))

import grpc  # noqa: E402

import driver_pb2 as pb  # noqa: E402
import driver_pb2_grpc as pb_grpc  # noqa: E402

SECRET = "slim-conformance-interop-shared-secret-0123456789"
JWT_SECRET = "slim-conformance-interop-jwt-hs256-secret-0123456789"
T = 15_000  # timeout_ms for every waiting call
RELIABLE = pb.Reliability(interval_ms=1000, max_retries=5)


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


async def events_until(stub, app_id, pred, timeout=10):
    """Opens a fresh Events stream (history first) and reads until pred(events) holds."""
    seen = []
    call = stub.Events(pb.AppRef(app_id=app_id))

    async def read():
        async for ev in call:
            seen.append(ev)
            if pred(seen):
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        call.cancel()
    return seen


async def expect_code(coro, code, what):
    try:
        await coro
    except grpc.aio.AioRpcError as e:
        check(e.code() == code, f"{what}: want {code.name}, got {e.code().name} ({e.details()})")
        return e.details()
    raise Failed(f"{what}: want {code.name}, got OK")


async def run(stub, node, tag):
    async def app(name, **identity):
        identity = identity or dict(shared_secret=SECRET)
        r = await stub.CreateApp(pb.CreateAppRequest(name=f"smoke{tag}/ns/{name}", node_url=node,
                                                     timeout_ms=T, **identity))
        check(r.full_name.startswith(f"smoke{tag}/ns/{name}/"), f"full_name {r.full_name!r}")
        return r

    caps = await stub.GetCapabilities(pb.GetCapabilitiesRequest())
    print(f"  implementation={caps.implementation!r} driver_version={caps.driver_version}")
    check(caps.driver_version == "1", "driver_version is 1")
    yield "GetCapabilities"

    alice, bob = await app("alice"), await app("bob")
    print(f"  alice={alice.full_name} bob={bob.full_name}")
    yield "CreateApp x2"

    waiting = asyncio.ensure_future(stub.AwaitSession(pb.AwaitSessionRequest(app_id=bob.app_id, timeout_ms=T)))
    a = await stub.CreateSession(pb.CreateSessionRequest(
        app_id=alice.app_id, type=pb.SESSION_TYPE_POINT_TO_POINT, peer=f"smoke{tag}/ns/bob",
        reliability=RELIABLE, mls=True, timeout_ms=T))
    b = await waiting
    print(f"  alice session {a.session_id} wire={a.wire_session_id} peer={a.peer}; bob {b.session_id} peer={b.peer}")
    check(a.wire_session_id == b.wire_session_id, "both ends see the same wire session id")
    check(b.peer == alice.full_name, f"bob's peer {b.peer!r} is alice's full name")
    yield "p2p reliable MLS session (CreateSession + AwaitSession)"

    payloads = [f"m{i}".encode() for i in range(10)]
    r = await stub.Publish(pb.PublishRequest(app_id=alice.app_id, session_id=a.session_id, payloads=payloads,
                                             wait=True, timeout_ms=T))
    statuses = [pb.PublishOutcome.Status.Name(o.status) for o in r.outcomes]
    check(statuses == ["STATUS_OK"] * 10, f"10 outcomes OK: {statuses}")
    yield "Publish 10 with wait"

    evs = await events_until(stub, bob.app_id, lambda s: sum(e.HasField("message") for e in s) >= 10)
    msgs = [e.message for e in evs if e.HasField("message")]
    check([m.payload for m in msgs] == payloads, f"bob got {[m.payload for m in msgs]}")
    check(all(m.sender == alice.full_name and m.session_id == b.session_id for m in msgs), "sender/session")
    check(evs[0].HasField("session_opened") and not evs[0].session_opened.initiator, "session_opened first")
    yield "receiver's Events: 10 messages in order"

    mod, p1, p2 = await app("mod"), await app("p1"), await app("p2")
    waits = [asyncio.ensure_future(stub.AwaitSession(pb.AwaitSessionRequest(app_id=p.app_id, timeout_ms=T)))
             for p in (p1, p2)]
    g = await stub.CreateSession(pb.CreateSessionRequest(
        app_id=mod.app_id, type=pb.SESSION_TYPE_GROUP, peer=f"smoke{tag}/ns/chan", reliability=RELIABLE,
        mls=True, timeout_ms=T))
    for p in ("p1", "p2"):
        await stub.Invite(pb.MemberRequest(app_id=mod.app_id, session_id=g.session_id, name=f"smoke{tag}/ns/{p}",
                                           timeout_ms=T))
    g1, g2 = [await w for w in waits]
    yield "group: create + invite 2"

    members = await stub.Members(pb.SessionRef(app_id=mod.app_id, session_id=g.session_id, timeout_ms=T))
    want = sorted([mod.full_name, p1.full_name, p2.full_name])
    check(list(members.members) == want, f"Members {list(members.members)} == {want}")
    await stub.Remove(pb.MemberRequest(app_id=mod.app_id, session_id=g.session_id, name=f"smoke{tag}/ns/p2",
                                       timeout_ms=T))
    evs = await events_until(stub, p2.app_id, lambda s: any(
        (e.HasField("session_closed") and e.session_closed.session_id == g2.session_id)
        or (e.HasField("removed") and e.removed.session_id == g2.session_id) for e in s))
    ends = [e for e in evs if e.HasField("session_closed") or e.HasField("removed")]
    check(ends, "p2 sees its session end")
    print(f"  p2's end: {ends[0]}".rstrip())
    members = await stub.Members(pb.SessionRef(app_id=mod.app_id, session_id=g.session_id, timeout_ms=T))
    want = sorted([mod.full_name, p1.full_name])
    check(list(members.members) == want, f"Members after removal {list(members.members)} == {want}")
    yield "group: Members 3, remove p2 (p2 sees the end), Members 2"

    if not caps.state_auth:
        why = await expect_code(stub.StateAuth(pb.SessionRef(app_id=mod.app_id, session_id=g.session_id)),
                                grpc.StatusCode.UNIMPLEMENTED, "StateAuth")
        print(f"  StateAuth: {why}")
    await expect_code(stub.Members(pb.SessionRef(app_id="no-such-app", session_id="s1")),
                      grpc.StatusCode.NOT_FOUND, "unknown app")
    await expect_code(stub.Members(pb.SessionRef(app_id=mod.app_id, session_id="no-such-session")),
                      grpc.StatusCode.NOT_FOUND, "unknown session")
    await expect_code(stub.Subscribe(pb.NameRequest(app_id=mod.app_id, name="not-a-name")),
                      grpc.StatusCode.INVALID_ARGUMENT, "bad name")
    await expect_code(stub.AwaitSession(pb.AwaitSessionRequest(app_id=mod.app_id, timeout_ms=300)),
                      grpc.StatusCode.DEADLINE_EXCEEDED, "AwaitSession with nothing coming")
    yield "status codes: UNIMPLEMENTED, NOT_FOUND, INVALID_ARGUMENT, DEADLINE_EXCEEDED"

    apps = [alice, bob, mod, p1, p2]
    if caps.jwt_identity:
        ja, jb = await app("jalice", jwt_hs256_secret=JWT_SECRET), await app("jbob", jwt_hs256_secret=JWT_SECRET)
        apps += [ja, jb]
        waiting = asyncio.ensure_future(stub.AwaitSession(pb.AwaitSessionRequest(app_id=jb.app_id, timeout_ms=T)))
        sa = await stub.CreateSession(pb.CreateSessionRequest(
            app_id=ja.app_id, type=pb.SESSION_TYPE_POINT_TO_POINT, peer=f"smoke{tag}/ns/jbob",
            reliability=RELIABLE, mls=True, timeout_ms=T))
        sb = await waiting
        for sender, s, receiver in ((ja, sa, jb), (jb, sb, ja)):
            r = await stub.Publish(pb.PublishRequest(app_id=sender.app_id, session_id=s.session_id,
                                                     payloads=[b"jwt"], wait=True, timeout_ms=T))
            check(r.outcomes[0].status == pb.PublishOutcome.STATUS_OK, f"JWT publish: {r.outcomes[0]}")
            evs = await events_until(stub, receiver.app_id, lambda s: any(e.HasField("message") for e in s))
            msgs = [e.message for e in evs if e.HasField("message")]
            check([(m.payload, m.sender) for m in msgs] == [(b"jwt", sender.full_name)], f"JWT message: {msgs}")
        yield "jwt_hs256_secret: p2p reliable MLS session, a message each way"
    else:
        print("  (no jwt_identity: JWT step skipped)")

    for x in apps:
        await stub.Free(pb.AppRef(app_id=x.app_id))
    await expect_code(stub.Members(pb.SessionRef(app_id=bob.app_id, session_id=b.session_id)),
                      grpc.StatusCode.NOT_FOUND, "freed app")
    yield f"Free x{len(apps)}"


async def main(driver, node):
    ok = True
    async with grpc.aio.insecure_channel(driver) as channel:
        stub = pb_grpc.DriverStub(channel)
        steps = run(stub, node, os.getpid())
        start = total = time.monotonic()
        try:
            async for step in steps:
                now = time.monotonic()
                print(f"ok   {now - start:6.2f}s  {step}", flush=True)
                start = now
        except Exception as e:  # a failed check, an RPC error, or a smoke bug: all fail the run
            text = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.aio.AioRpcError) else repr(e)
            print(f"FAIL {time.monotonic() - start:6.2f}s  {text}", flush=True)
            ok = False
        print(f"{'ok' if ok else 'FAILED'}: {time.monotonic() - total:.2f}s in all", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", required=True, help="the driver's address, HOST:PORT")
    ap.add_argument("--node", required=True, help="the node the apps connect to, e.g. http://127.0.0.1:46357")
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.driver, a.node)))
