"""Runs the real SLIM node embedded in slim-bindings on --listen (plaintext h2c) until SIGINT/SIGTERM.

Useful to run the interop drivers against the real node instead of slim-relay:
    python serve_real_node.py --listen 127.0.0.1:46357
Prints {"event": "ready", "listen": ...} once the server runs.
"""

import argparse
import asyncio
import json
import signal

import slim_bindings as slim


async def main(listen):
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    slim.initialize_with_defaults()
    service = slim.get_global_service()
    await service.run_server_async(slim.new_insecure_server_config(listen))
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
    asyncio.run(main(ap.parse_args().listen))
