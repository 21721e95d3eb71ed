"""Cross-check driver: a real SLIM app (slim-bindings) starts a point-to-point session to --dest.

The SDK hashes --dest itself and sends a session discovery Publish to it through --node; the
test that runs this subscribes --dest with hashes taken from vectors/names.yaml, so receiving the
discovery proves the vectors match what real SLIM computes. Nobody answers the discovery; the
script reports "sent" once the session attempt has had time to go out, then exits.
"""

import argparse
import asyncio

import slimapp


async def main(node, me, dest):
    service, app, conn_id = await slimapp.start_app(node, me)
    await app.set_route_async(slimapp.name(dest), conn_id)
    config = slimapp.slim.SessionConfig(
        session_type=slimapp.slim.SessionType.POINT_TO_POINT,
        max_retries=2,
        interval=slimapp.seconds(1),
        metadata={},
        mls_settings=slimapp.mls_settings(),
    )
    slimapp.emit("ready")
    try:
        await asyncio.wait_for(app.create_session_and_wait_async(config, slimapp.name(dest)), 4)
    except Exception as e:  # no peer answers: a timeout is the expected end
        slimapp.emit("sent", outcome=type(e).__name__)
        return
    slimapp.emit("sent", outcome="unexpected session")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True)
    ap.add_argument("--me", required=True)
    ap.add_argument("--dest", required=True)
    a = ap.parse_args()
    asyncio.run(main(a.node, a.me, a.dest))
