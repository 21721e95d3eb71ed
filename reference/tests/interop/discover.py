"""Identity cross-check driver: a real SLIM app (slim-bindings) opens an MLS session to --dest.

The app is created with the shared secret given by --secret (so the test that runs this can
verify its identity tokens and issue tokens the app accepts). It sets a route for --dest on its
node connection and starts a point-to-point session with MLS on: the SDK sends a signed
DISCOVERY_REQUEST and, if a peer answers with a DISCOVERY_REPLY it accepts, a signed
JOIN_REQUEST. Nobody completes the MLS handshake, so the attempt times out; the script reports
how it ended and exits. Events are JSON lines on stdout (last line: the outcome).
"""

import argparse
import asyncio

import slimapp


async def main(node, me, dest, secret, wait):
    slim = slimapp.slim
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    slim.initialize_with_defaults()
    service = slim.get_global_service()
    conn_id = await service.connect_async(slim.new_insecure_client_config(node))
    # The blocking constructor: in 3.3.8 the async one panics outside the SDK's Tokio runtime.
    app = service.create_app_with_secret(slimapp.name(me), secret)
    await app.subscribe_async(slimapp.name(me), conn_id)
    await app.set_route_async(slimapp.name(dest), conn_id)
    config = slim.SessionConfig(
        session_type=slim.SessionType.POINT_TO_POINT,
        max_retries=5,
        interval=slimapp.seconds(1),
        metadata={},
        mls_settings=slimapp.mls_settings(),
    )
    slimapp.emit("ready")
    try:
        await asyncio.wait_for(app.create_session_and_wait_async(config, slimapp.name(dest)), wait)
    except Exception as e:  # nobody completes the handshake: a timeout is the expected end
        slimapp.emit("done", outcome=type(e).__name__)
        return
    slimapp.emit("done", outcome="unexpected session")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True)
    ap.add_argument("--me", required=True)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--wait", type=float, default=8.0)
    a = ap.parse_args()
    asyncio.run(main(a.node, a.me, a.dest, a.secret, a.wait))
