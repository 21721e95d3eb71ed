"""Identity cross-check driver: a real SLIM app (slim-bindings) opens an MLS session to --dest.

The app's identity is a shared secret (--secret), or a JWT with --subject signed with HS256
(--jwt-hs256 SECRET) or ES256 (--jwt-es256 PRIVATE_PEM_FILE PUBLIC_PEM_FILE), so the test that
runs this can verify its identity tokens and issue tokens the app accepts. It sets a route for --dest on its
node connection and starts a point-to-point session with MLS on: the SDK sends a signed
DISCOVERY_REQUEST and, if a peer answers with a DISCOVERY_REPLY it accepts, a signed
JOIN_REQUEST. Nobody completes the MLS handshake, so the attempt times out; the script reports
how it ended and exits. Events are JSON lines on stdout (last line: the outcome).
"""

import argparse
import asyncio

import slimapp


def jwt_app(service, me, subject, alg, encoding, decoding):
    """An app whose identity is a JWT for `subject`, verifying peers' JWTs with `decoding`."""
    slim = slimapp.slim

    def key(kind, data):
        return kind(slim.JwtKeyConfig(algorithm=alg, format=slim.JwtKeyFormat.PEM, key=slim.JwtKeyData.DATA(data)))

    provider = slim.IdentityProviderConfig.JWT(slim.ClientJwtAuth(
        key=key(slim.JwtKeyType.ENCODING, encoding), audience=None, issuer=None,
        subject=subject, duration=slimapp.seconds(3600)))
    verifier = slim.IdentityVerifierConfig.JWT(slim.JwtAuth(
        key=key(slim.JwtKeyType.DECODING, decoding), audience=None, issuer=None,
        subject=None, duration=slimapp.seconds(3600)))
    return service.create_app(slimapp.name(me), provider, verifier)


async def main(node, me, dest, a):
    slim = slimapp.slim
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    slim.initialize_with_defaults()
    service = slim.get_global_service()
    conn_id = await service.connect_async(slim.new_insecure_client_config(node))
    # The blocking constructor: in 3.3.8 the async one panics outside the SDK's Tokio runtime.
    if a.secret is not None:
        app = service.create_app_with_secret(slimapp.name(me), a.secret)
    elif a.jwt_hs256 is not None:
        app = jwt_app(service, me, a.subject, slim.JwtAlgorithm.HS256, a.jwt_hs256, a.jwt_hs256)
    else:
        private, public = (open(path).read() for path in a.jwt_es256)
        app = jwt_app(service, me, a.subject, slim.JwtAlgorithm.ES256, private, public)
    await app.subscribe_async(slimapp.name(me), conn_id)
    await app.set_route_async(slimapp.name(dest), conn_id)
    config = slim.SessionConfig(
        session_type=slim.SessionType.POINT_TO_POINT,
        max_retries=10,
        interval=slimapp.seconds(1),
        metadata={},
        mls_settings=slimapp.mls_settings(),
    )
    slimapp.emit("ready")
    try:
        await asyncio.wait_for(app.create_session_and_wait_async(config, slimapp.name(dest)), a.wait)
    except Exception as e:  # nobody completes the handshake: a timeout is the expected end
        slimapp.emit("done", outcome=type(e).__name__)
        return
    slimapp.emit("done", outcome="unexpected session")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", required=True)
    ap.add_argument("--me", required=True)
    ap.add_argument("--dest", required=True)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--secret", help="shared secret (>= 32 bytes)")
    who.add_argument("--jwt-hs256", metavar="SECRET")
    who.add_argument("--jwt-es256", nargs=2, metavar=("PRIVATE_PEM", "PUBLIC_PEM"))
    ap.add_argument("--subject", help="JWT subject (with --jwt-*)")
    ap.add_argument("--wait", type=float, default=8.0)
    a = ap.parse_args()
    if a.secret is None and not a.subject:
        ap.error("--jwt-* needs --subject")
    asyncio.run(main(a.node, a.me, a.dest, a))
