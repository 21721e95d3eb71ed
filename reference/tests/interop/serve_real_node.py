"""Runs the real SLIM node embedded in slim-bindings on --listen (plaintext h2c) until SIGINT/SIGTERM.

Useful to run the interop drivers against the real node instead of slim-relay:
    python serve_real_node.py --listen 127.0.0.1:46357
Prints {"event": "ready", "listen": ...} once the server runs.

With --jwt-public-key PEM (and --jwt-issuer, --jwt-audience) the node requires JWT bearer tokens
(ES256) verified with that key: the node's own `auth: jwt`, for the runner's revocation cases.

With --tls-cert PEM --tls-key PEM the node serves TLS (the SDK's `new_secure_server_config`), and
with --tls-client-ca PEM it requires client certificates signed by that CA (mutual TLS).
"""

import argparse
import asyncio
import datetime
import json
import signal

import slim_bindings as slim


def jwt_auth(public_key, issuer, audience):
    key = slim.JwtKeyType.DECODING(
        slim.JwtKeyConfig(
            algorithm=slim.JwtAlgorithm.ES256,
            format=slim.JwtKeyFormat.PEM,
            key=slim.JwtKeyData.FILE(public_key),
        )
    )
    return slim.ServerAuthenticationConfig.JWT(
        slim.JwtAuth(
            key=key,
            audience=[audience] if audience else None,
            issuer=issuer,
            subject=None,
            duration=datetime.timedelta(hours=1),
        )
    )


async def main(listen, public_key, issuer, audience, tls_cert=None, tls_key=None, client_ca=None):
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    slim.initialize_with_defaults()
    service = slim.get_global_service()
    if tls_cert:
        config = slim.new_secure_server_config(listen, slim.TlsSource.FILE(tls_cert, tls_key))
        if client_ca:
            config.tls.client_ca = slim.CaSource.FILE(client_ca)
    else:
        config = slim.new_insecure_server_config(listen)
    if public_key:
        config.auth = jwt_auth(public_key, issuer, audience)
    await service.run_server_async(config)
    print(json.dumps({"event": "ready", "listen": listen}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    service.stop_server(listen)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:46357")
    ap.add_argument("--jwt-public-key", help="SPKI PEM P-256 key: require ES256 JWT bearer tokens")
    ap.add_argument("--jwt-issuer")
    ap.add_argument("--jwt-audience")
    ap.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (with --tls-key)")
    ap.add_argument("--tls-key", help="PEM private key of --tls-cert")
    ap.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mTLS)")
    a = ap.parse_args()
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    asyncio.run(
        main(a.listen, a.jwt_public_key, a.jwt_issuer, a.jwt_audience, a.tls_cert, a.tls_key, a.tls_client_ca)
    )
