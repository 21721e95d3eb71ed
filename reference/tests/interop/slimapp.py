"""Shared plumbing for the interop drivers: one real SLIM app per OS process.

A driver starts workers (this machinery, `python <driver> --worker ROLE ...`). Each worker owns one
slim-bindings service with its own gRPC connection to the node under test, so every message between
apps crosses that node. Workers talk to their driver with JSON lines: events on stdout, commands on
stdin. Every wait is bounded; a worker that hits a bound reports an error event and exits non-zero.
"""

import asyncio
import datetime
import json
import sys

import slim_bindings as slim

# A shared secret (>= 32 bytes) for the apps' identity tokens; only used on loopback in tests.
SECRET = "slim-conformance-interop-shared-secret-0123456789"


def emit(event, **fields):
    """Print one JSON event line for the driver."""
    fields["event"] = event
    print(json.dumps(fields), flush=True)


def seconds(s):
    return datetime.timedelta(seconds=s)


def name(text):
    org, ns, svc = text.split("/")
    return slim.Name(org, ns, svc)


async def start_app(node, app_name):
    """Connects a fresh SLIM service to `node` and creates a shared-secret app subscribed there."""
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    slim.initialize_with_defaults()
    service = slim.get_global_service()
    conn_id = await service.connect_async(slim.new_insecure_client_config(node))
    # The blocking constructor: in 3.3.8 the async one panics outside the SDK's Tokio runtime.
    app = service.create_app_with_secret(name(app_name), SECRET)
    await app.subscribe_async(name(app_name), conn_id)
    return service, app, conn_id


class Commands:
    """Reads the driver's JSON command lines from stdin without blocking the event loop."""

    def __init__(self):
        self.queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), self._readable)

    def _readable(self):
        line = sys.stdin.readline()
        if not line:
            self.queue.put_nowait({"cmd": "eof"})
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            return
        self.queue.put_nowait(json.loads(line))

    async def next(self, timeout):
        return await asyncio.wait_for(self.queue.get(), timeout)


def mls_settings():
    # 100 = check the header AAD after every decryption.
    return slim.MlsSettings(header_integrity_validation_percent=100, max_seen_control_message_ids_size=None)


class Worker:
    """A subprocess running one app, driven by JSON lines."""

    def __init__(self, role, proc):
        self.role = role
        self.proc = proc
        self.events = []

    @classmethod
    async def start(cls, script, role, args):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, script, "--worker", role, *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherit: the SDK's and our diagnostics reach the test log
        )
        return cls(role, proc)

    async def send(self, **cmd):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, event, timeout):
        """Waits for the next event of kind `event`; fails on an error event, EOF or timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise RuntimeError(f"{self.role}: no '{event}' event within {timeout}s")
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except asyncio.TimeoutError:
                raise RuntimeError(f"{self.role}: no '{event}' event within {timeout}s") from None
            if not line:
                raise RuntimeError(f"{self.role}: exited (code {self.proc.returncode}) before '{event}'")
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours (library output on stdout)
            self.events.append(ev)
            if ev.get("event") == "error":
                raise RuntimeError(f"{self.role}: {ev.get('message')}")
            if ev.get("event") == event:
                return ev

    def kill(self):
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


async def stop_all(workers):
    """Asks workers to exit, then kills whatever is left (always called, also on failure)."""
    for w in workers:
        try:
            if w.proc.returncode is None:
                await w.send(cmd="quit")
        except (BrokenPipeError, ConnectionResetError):
            pass
    for w in workers:
        try:
            await asyncio.wait_for(w.proc.wait(), 5)
        except asyncio.TimeoutError:
            pass
        w.kill()
        await w.proc.wait()


def run_worker(main):
    """Runs a worker coroutine; any exception becomes an error event and exit code 1."""
    async def wrapped():
        try:
            await main()
        except Exception as e:  # report, never hang
            emit("error", message=f"{type(e).__name__}: {e}")
            sys.stdout.flush()
            raise SystemExit(1)
    asyncio.run(wrapped())
