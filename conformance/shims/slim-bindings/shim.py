"""The session-profile driver (proto/conformance/v1/driver.proto, spec/DRIVER.md) over slim-bindings.

    shim.py --listen 127.0.0.1:0        (launch.sh sets up the venv and the stubs, then runs this)

How the driver maps onto the SDK (slim-bindings 3.3.8):
- An app is one SDK `Service` of its own (`create_service`) with its own `connect_async` to
  `node_url`, so each app is its own link at the node; its identity is `create_app_with_secret`
  (the blocking constructor: the async one panics in 3.3.8), or for `jwt_hs256_secret`
  `create_app` with the SDK's JWT auth (see `jwt_identity`), and it subscribes its own name.
- From creation on, each app runs a listen loop (`listen_for_session_async`): an arriving session
  is recorded as `session_opened` and queued for AwaitSession. Every session, arriving or created,
  runs a receive loop (`get_message_async`): a message becomes `message` (sender = the source name
  with its id), "participant disconnected: NAME" becomes `member_left`, and any other error ends
  the session: `session_closed` with the SDK's text (the SDK reports a removal and a moderator's
  close identically, "session closed", so a removed member sees `session_closed`, never `removed`).
- CreateSession = `set_route_async` to the peer (p2p) + `create_session_and_wait_async`;
  Invite/Remove = `invite_and_wait_async`/`remove_and_wait_async`; Leave/CloseSession =
  `delete_session_and_wait_async`; Publish = `publish_and_wait_async` per payload (wait) or
  `publish_async`; Members = `participants_list_async`; Free = delete the sessions, disconnect,
  shut the app's Service down.
- State is kept by opaque ids: apps "a1", "a2", ...; sessions "s1", "s2", ... (the SDK's wire
  session id is returned alongside). Names print as org/ns/name/<UUID> (the SDK's id form).
- The SDK's Rust tracing writes to fd 1: fd 1 is pointed at stderr before the SDK starts, and
  the one listening line goes to the original stdout.
"""

import argparse
import asyncio
import contextlib
import datetime
import itertools
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("DRIVER_GEN") or os.path.join(HERE, "../../../target/shims/slim-bindings/gen"))

import grpc  # noqa: E402
import slim_bindings as slim  # noqa: E402

import driver_pb2 as pb  # noqa: E402
import driver_pb2_grpc as pb_grpc  # noqa: E402

VERSION = "3.3.8"
P2P, GROUP = pb.SESSION_TYPE_POINT_TO_POINT, pb.SESSION_TYPE_GROUP
Code = grpc.StatusCode
NO_JWT = ("slim-bindings mints its own JWTs from a signing key (ClientJwtAuth) or reads a token file "
          "(StaticJwtAuth), but cannot take a given token together with the private key its pubkey claim names; "
          "use jwt_hs256_secret")


class Abort(Exception):
    """Abort(code, text): answer the RPC with this status."""


def seconds(ms):
    return datetime.timedelta(milliseconds=ms)


def timeout_s(ms):
    return (ms or 10_000) / 1000


def parse_name(text):
    """'org/ns/name' or 'org/ns/name/<id>' (UUID, decimal, 0x hex or NULL_COMPONENT) -> slim.Name."""
    parts = text.split("/")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise Abort(Code.INVALID_ARGUMENT, f"name {text!r}: want org/ns/name or org/ns/name/<id>")
    if len(parts) == 3 or parts[3] == "NULL_COMPONENT":
        return slim.Name(*parts[:3])
    ident = parts[3]
    try:
        value = int(ident, 16) if ident.lower().startswith("0x") else int(ident) if ident.isdigit() else None
        ident = str(uuid.UUID(int=value) if value is not None else uuid.UUID(ident))
    except ValueError:
        raise Abort(Code.INVALID_ARGUMENT, f"name {text!r}: id is not a UUID, decimal or 0x hex") from None
    return slim.Name.new_with_id(*parts[:3], ident)


def full_name(n):
    """org/ns/name/<UUID>, or org/ns/name when the SDK's Name carries no id."""
    comps = list(n.components())[:3]
    ident = n.id()
    return "/".join(comps + ([ident] if ident and "NULL" not in ident else []))


def jwt_identity(name, secret):
    """The SDK's JWT auth for an app: it mints HS256 tokens with `secret` and verifies peers' with it.

    The SDK needs a subject (without one its MLS refuses the token: "missing subject claim"); the
    app's id derives from it, so it is unique per app, like the shared-secret provider's own:
    org/ns/app_<8 random characters>."""
    key = slim.JwtKeyConfig(algorithm=slim.JwtAlgorithm.HS256, format=slim.JwtKeyFormat.PEM,
                            key=slim.JwtKeyData.DATA(value=secret))
    sub = "/".join(name.components()[:3]) + "_" + uuid.uuid4().hex[:8]
    common = dict(audience=None, issuer=None, duration=datetime.timedelta(hours=1))
    return (slim.IdentityProviderConfig.JWT(config=slim.ClientJwtAuth(
                key=slim.JwtKeyType.ENCODING(key=key), subject=sub, **common)),
            slim.IdentityVerifierConfig.JWT(config=slim.JwtAuth(
                key=slim.JwtKeyType.DECODING(key=key), subject=None, **common)))


def text_of(e):
    """The SDK's own error text ("session closed"; str() of a SlimError is "message='...'")."""
    return str(getattr(e, "message", e))


def is_timeout(e):
    """Whether an SDK error is only a poll timing out (the SDK says "timeout" or "timed out")."""
    return "timeout" in text_of(e).lower() or "timed out" in text_of(e).lower()


def sdk_text(e):
    return f"{type(e).__name__}: {text_of(e)}"


class Session:
    def __init__(self, sid, sdk, kind, peer):
        self.id, self.sdk, self.kind, self.peer = sid, sdk, kind, peer
        self.closing = False  # Leave/CloseSession/Free by this app: the end is ours


class App:
    """One SDK Service + connection + App, its sessions and its event history."""

    def __init__(self, app_id, service, conn, sdk):
        self.id, self.service, self.conn, self.sdk = app_id, service, conn, sdk
        self.sessions = {}
        self.arrived = asyncio.Queue()  # sessions for AwaitSession
        self.events = []  # everything told to this app, in order; None = freed (stream end)
        self.changed = asyncio.Event()  # set (and replaced) at every new event
        self.tasks = set()

    def background(self, coro):
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def emit(self, **kind):
        self.events.append(pb.Event(**kind) if kind else None)
        self.changed.set()
        self.changed = asyncio.Event()


class Driver(pb_grpc.DriverServicer):
    def __init__(self):
        self.apps = {}
        self.ids = itertools.count(1)  # ids "a1", "s2", ...: opaque to the runner

    def app(self, app_id):
        if app_id not in self.apps:
            raise Abort(Code.NOT_FOUND, f"no app {app_id!r}")
        return self.apps[app_id]

    def session(self, req):
        app = self.app(req.app_id)
        if req.session_id not in app.sessions:
            raise Abort(Code.NOT_FOUND, f"no session {req.session_id!r} in app {req.app_id!r}")
        return app, app.sessions[req.session_id]

    def _add_session(self, app, sdk, kind, peer, initiator):
        s = Session(f"s{next(self.ids)}", sdk, kind, peer)
        app.sessions[s.id] = s
        app.emit(session_opened=pb.SessionOpened(session_id=s.id, type=kind, peer=peer, initiator=initiator))
        app.background(self._receive(app, s))
        return s

    def _response(self, s):
        return pb.SessionResponse(session_id=s.id, wire_session_id=s.sdk.session_id(), type=s.kind, peer=s.peer)

    async def _receive(self, app, s):
        while True:
            try:
                msg = await s.sdk.get_message_async(seconds(1000))
            except Exception as e:
                if is_timeout(e):
                    continue
                if text_of(e).startswith("participant disconnected:"):  # a member left; the session goes on
                    member = text_of(e).split(":", 1)[1].strip()
                    app.emit(member_left=pb.MemberLeft(session_id=s.id, member=member))
                    continue
                reason = "closed by this app" if s.closing else sdk_text(e)
                app.emit(session_closed=pb.SessionClosed(session_id=s.id, reason=reason))
                return
            sender = full_name(msg.context.source_name)
            app.emit(message=pb.MessageReceived(session_id=s.id, sender=sender, payload=msg.payload))

    async def _watch_send(self, app, s, handle):
        try:
            await handle.wait_async()
        except Exception as e:
            app.emit(send_failed=pb.SendFailed(session_id=s.id, reason=sdk_text(e)))

    async def _listen(self, app):
        while True:
            try:
                sdk = await app.sdk.listen_for_session_async(seconds(1000))
            except Exception as e:
                if not is_timeout(e):
                    app.emit(note=f"listen_for_session: {sdk_text(e)}")
                    await asyncio.sleep(0.1)
                continue
            group = sdk.session_type() == slim.SessionType.GROUP
            peer = "/".join(sdk.destination().components()) if group else full_name(sdk.destination())
            await app.arrived.put(self._add_session(app, sdk, GROUP if group else P2P, peer, False))

    # --- RPCs -------------------------------------------------------------------------------

    async def GetCapabilities(self, req, ctx):
        return pb.Capabilities(
            implementation=f"slim-bindings {VERSION}", driver_version="1", point_to_point=True, group=True,
            fire_and_forget=True, reliable=True, mls=True, mls_ciphersuites=[2], shared_secret_identity=True,
            jwt_identity=True, state_auth=False, key_rotation=False, revocation=False,
            publish_outcome=True, leave=True)

    async def CreateApp(self, req, ctx):
        kind = req.WhichOneof("identity")
        if kind == "jwt":
            raise Abort(Code.UNIMPLEMENTED, NO_JWT)
        if not (kind == "shared_secret" and len(req.shared_secret.encode()) >= 32
                or kind == "jwt_hs256_secret" and req.jwt_hs256_secret):
            raise Abort(Code.INVALID_ARGUMENT,
                        "identity: want a shared_secret of at least 32 bytes or a non-empty jwt_hs256_secret")
        if not req.node_url:
            raise Abort(Code.INVALID_ARGUMENT, "node_url is empty")
        name = parse_name(req.name)
        app_id = f"a{next(self.ids)}"
        service = slim.create_service(f"driver-{app_id}")
        try:
            conn = await asyncio.wait_for(
                service.connect_async(slim.new_insecure_client_config(req.node_url)), timeout_s(req.timeout_ms))
            if kind == "shared_secret":
                sdk = service.create_app_with_secret(name, req.shared_secret)
            else:
                sdk = service.create_app(name, *jwt_identity(name, req.jwt_hs256_secret))
            await sdk.subscribe_async(name, conn)
        except BaseException:
            await asyncio.wait_for(service.shutdown_async(), 5)
            raise
        app = self.apps[app_id] = App(app_id, service, conn, sdk)
        app.background(self._listen(app))
        return pb.CreateAppResponse(app_id=app_id, full_name="/".join(name.components()[:3] + [sdk.id()]))

    async def Subscribe(self, req, ctx):
        app = self.app(req.app_id)
        await asyncio.wait_for(app.sdk.subscribe_async(parse_name(req.name), app.conn), timeout_s(req.timeout_ms))
        return pb.Empty()

    async def SetRoute(self, req, ctx):
        app = self.app(req.app_id)
        await asyncio.wait_for(app.sdk.set_route_async(parse_name(req.name), app.conn), timeout_s(req.timeout_ms))
        return pb.Empty()

    async def CreateSession(self, req, ctx):
        app = self.app(req.app_id)
        if req.type not in (P2P, GROUP):
            raise Abort(Code.INVALID_ARGUMENT, "type: want SESSION_TYPE_POINT_TO_POINT or SESSION_TYPE_GROUP")
        peer = parse_name(req.peer)
        rel = req.reliability if req.HasField("reliability") else None
        config = slim.SessionConfig(
            session_type=slim.SessionType.GROUP if req.type == GROUP else slim.SessionType.POINT_TO_POINT,
            max_retries=rel.max_retries if rel else None,
            interval=seconds(rel.interval_ms) if rel else None,
            metadata={},
            mls_settings=slim.MlsSettings(header_integrity_validation_percent=100,
                                          max_seen_control_message_ids_size=None) if req.mls else None)

        async def create():
            if req.type == P2P:
                await app.sdk.set_route_async(peer, app.conn)
            return await app.sdk.create_session_and_wait_async(config, peer)

        sdk = await asyncio.wait_for(create(), timeout_s(req.timeout_ms))
        shown = await self._member_name(app, sdk, req.peer) if req.type == P2P else req.peer
        return self._response(self._add_session(app, sdk, req.type, shown, True))

    async def _member_name(self, app, sdk, text):
        """`text` with the id the member has in the session (from participants_list), if known."""
        me = full_name(app.sdk.name())
        names = [full_name(p.name) for p in await sdk.participants_list_async()]
        return next((n for n in names if n != me and (n == text or n.startswith(text + "/"))), text)

    async def AwaitSession(self, req, ctx):
        app = self.app(req.app_id)
        return self._response(await asyncio.wait_for(app.arrived.get(), timeout_s(req.timeout_ms)))

    async def Invite(self, req, ctx):
        app, s = self.session(req)
        name = parse_name(req.name)

        async def invite():
            await app.sdk.set_route_async(name, app.conn)
            await s.sdk.invite_and_wait_async(name)

        await asyncio.wait_for(invite(), timeout_s(req.timeout_ms))
        member = await self._member_name(app, s.sdk, req.name)
        app.emit(member_joined=pb.MemberJoined(session_id=s.id, member=member))
        return pb.Empty()

    async def Remove(self, req, ctx):
        app, s = self.session(req)
        name = parse_name(req.name)
        member = await self._member_name(app, s.sdk, req.name)
        await asyncio.wait_for(s.sdk.remove_and_wait_async(name), timeout_s(req.timeout_ms))
        app.emit(member_left=pb.MemberLeft(session_id=s.id, member=member))
        return pb.Empty()

    async def Leave(self, req, ctx):
        app, s = self.session(req)
        s.closing = True
        await asyncio.wait_for(app.sdk.delete_session_and_wait_async(s.sdk), timeout_s(req.timeout_ms))
        return pb.Empty()

    CloseSession = Leave  # the SDK has one call for both: delete the session

    async def Publish(self, req, ctx):
        app, s = self.session(req)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s(req.timeout_ms)
        outcomes = []
        for data in req.payloads:
            try:
                if req.wait:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise asyncio.TimeoutError
                    await asyncio.wait_for(s.sdk.publish_and_wait_async(data, None, None), left)
                else:  # the completion is kept and watched: dropping it lost messages now and then
                    handle = await s.sdk.publish_async(data, None, None)
                    app.background(self._watch_send(app, s, handle))
                outcomes.append(pb.PublishOutcome(status=pb.PublishOutcome.STATUS_OK))
            except asyncio.TimeoutError:
                outcomes.append(pb.PublishOutcome(status=pb.PublishOutcome.STATUS_UNKNOWN,
                                                  reason=f"no outcome within {timeout_s(req.timeout_ms)} s"))
            except Exception as e:
                outcomes.append(pb.PublishOutcome(status=pb.PublishOutcome.STATUS_FAILED, reason=sdk_text(e)))
        return pb.PublishResponse(outcomes=outcomes)

    async def Events(self, req, ctx):
        app = self.app(req.app_id)
        sent = 0
        while True:
            if len(app.events) == sent:
                await app.changed.wait()
                continue
            ev = app.events[sent]
            sent += 1
            if ev is None:
                return
            yield ev

    async def StateAuth(self, req, ctx):
        self.session(req)
        raise Abort(Code.UNIMPLEMENTED, "slim-bindings exposes no MLS epoch or epoch authenticator")

    async def Members(self, req, ctx):
        _, s = self.session(req)
        members = await asyncio.wait_for(s.sdk.participants_list_async(), timeout_s(req.timeout_ms))
        return pb.MembersResponse(members=sorted(full_name(p.name) for p in members))

    async def RotateKeys(self, req, ctx):
        self.session(req)
        raise Abort(Code.UNIMPLEMENTED, "slim-bindings exposes no MLS key update (no call commits a new leaf key)")

    async def RevokeIdentity(self, req, ctx):
        self.app(req.app_id)
        raise Abort(Code.UNIMPLEMENTED, "slim-bindings has no revocation API")

    async def Free(self, req, ctx):
        app = self.apps.pop(self.app(req.app_id).id)
        try:
            for t in list(app.tasks):
                t.cancel()
            for s in app.sessions.values():
                s.closing = True
                with contextlib.suppress(Exception):  # already closed by the peer or the moderator
                    await asyncio.wait_for(app.sdk.delete_session_async(s.sdk), 1)
            app.service.disconnect(app.conn)
            await asyncio.wait_for(app.service.shutdown_async(), 5)
        finally:
            app.emit()  # ends the Events stream
        return pb.Empty()


def with_status(method):
    """Maps what an RPC raised onto the driver's status codes (spec/DRIVER.md §4)."""
    async def unary(self, req, ctx):
        try:
            return await method(self, req, ctx)
        except Abort as e:
            await ctx.abort(*e.args)
        except asyncio.TimeoutError:
            await ctx.abort(Code.DEADLINE_EXCEEDED, f"no answer within {timeout_s(getattr(req, 'timeout_ms', 0))} s")
        except Exception as e:  # the SDK tried and failed: its own text
            await ctx.abort(Code.FAILED_PRECONDITION, sdk_text(e))

    async def stream(self, req, ctx):
        try:
            async for item in method(self, req, ctx):
                yield item
        except Abort as e:
            await ctx.abort(*e.args)

    return stream if method.__name__ == "Events" else unary


for _name in [n for n in dir(pb_grpc.DriverServicer) if not n.startswith("_")]:
    setattr(Driver, _name, with_status(getattr(Driver, _name)))


async def main(listen):
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the listening line goes here ...
    os.dup2(2, 1)  # ... and the SDK's logs (written to fd 1) to stderr
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    level = os.environ.get("SLIM_SHIM_LOG")  # e.g. "debug": the SDK's own tracing
    if level:
        slim.initialize_with_configs(slim.new_runtime_config(), slim.new_tracing_config_with(level, False, False, []),
                                     [slim.new_service_config()])
    else:
        slim.initialize_with_defaults()
    server = grpc.aio.server()
    pb_grpc.add_DriverServicer_to_server(Driver(), server)
    host = listen.rsplit(":", 1)[0]
    port = server.add_insecure_port(listen)
    await server.start()
    out.write(f"driver listening on {host}:{port}\n")
    await server.wait_for_termination()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(main(ap.parse_args().listen))
