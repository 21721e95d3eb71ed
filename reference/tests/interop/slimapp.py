"""Shared plumbing for the interop drivers: one real SLIM app per OS process.

A driver starts workers (this machinery, `python <driver> --worker ROLE ...`). Each worker owns one
slim-bindings service with its own gRPC connection to the node under test, so every message between
apps crosses that node. Workers talk to their driver with JSON lines: events on stdout, commands on
stdin. Every wait is bounded; a worker that hits a bound reports an error event and exits non-zero.
"""

import asyncio
import datetime
import json
import os
import sys

import slim_bindings as slim

# A shared secret (>= 32 bytes) for the apps' identity tokens; only used on loopback in tests.
SECRET = "slim-conformance-interop-shared-secret-0123456789"


# Where events go: the process's original stdout once `private_stdout()` ran, else sys.stdout.
_EVENTS = None


def private_stdout():
    """Keeps the original stdout for our JSON events only and points fd 1 at stderr.

    The SDK's Rust tracing writes to fd 1; sharing it with the events let a log line land in the
    middle of an event line (seen with debug logging), so an event was lost. Call before the SDK
    starts; afterwards the SDK's logs (and any stray print) go to stderr.
    """
    global _EVENTS
    if _EVENTS is None:
        sys.stdout.flush()
        _EVENTS = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)


def emit_line(text):
    """Print one plain line where the events go (human output of the stand-in)."""
    out = _EVENTS or sys.stdout
    out.write(text + "\n")
    out.flush()


def emit(event, **fields):
    """Print one JSON event line for the driver."""
    fields["event"] = event
    out = _EVENTS or sys.stdout
    out.write(json.dumps(fields) + "\n")
    out.flush()


def seconds(s):
    return datetime.timedelta(seconds=s)


def name(text):
    org, ns, svc = text.split("/")
    return slim.Name(org, ns, svc)


def full_name(n):
    """A Name as text, org/ns/app/<id> when it carries an id (str() of a Name drops the id)."""
    comps = list(n.components())[:3]
    try:
        ident = n.id()
    except Exception:
        ident = None
    if ident and "NULL" not in str(ident):
        comps.append(str(ident))
    return "/".join(comps)


def client_config(node):
    """The SDK's client config for `node`: h2c for http://, TLS for https://.

    With https:// the node's certificate is verified against the CA in SLIM_INTEROP_CA; with
    SLIM_INTEROP_CERT and SLIM_INTEROP_KEY the app presents that client certificate (mTLS). The
    environment carries them so that every driver and worker runs over TLS unchanged.
    """
    if not node.startswith("https://"):
        return slim.new_insecure_client_config(node)
    config = slim.new_secure_client_config(node)
    ca = os.environ.get("SLIM_INTEROP_CA")
    if ca:
        config.tls.ca_source = slim.CaSource.FILE(ca)
    cert, key = os.environ.get("SLIM_INTEROP_CERT"), os.environ.get("SLIM_INTEROP_KEY")
    if cert and key:
        config.tls.source = slim.TlsSource.FILE(cert, key)
    return config


async def start_app(node, app_name, secret=SECRET):
    """Connects a fresh SLIM service to `node` and creates a shared-secret app subscribed there."""
    slim.uniffi_set_event_loop(asyncio.get_running_loop())
    level = os.environ.get("SLIM_INTEROP_LOG")  # e.g. "debug": the SDK's own tracing, for diagnosis
    if level:
        slim.initialize_with_configs(
            slim.new_runtime_config(), slim.new_tracing_config_with(level, False, False, []), [slim.new_service_config()]
        )
    else:
        slim.initialize_with_defaults()
    service = slim.get_global_service()
    conn_id = await service.connect_async(client_config(node))
    # The blocking constructor: in 3.3.8 the async one panics outside the SDK's Tokio runtime.
    app = service.create_app_with_secret(name(app_name), secret)
    await app.subscribe_async(name(app_name), conn_id)
    return service, app, conn_id


class StdinLines:
    """stdin as an asyncio queue of lines (None at EOF), read without blocking the event loop.

    Reads the raw file descriptor: with `sys.stdin.readline()` a second line that arrived in the
    same chunk would sit in Python's buffer, unseen, until more input made the fd readable again.
    """

    def __init__(self):
        self.queue = asyncio.Queue()
        self._partial = b""
        self._fd = sys.stdin.fileno()
        os.set_blocking(self._fd, False)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def _readable(self):
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._fd)
            if self._partial:
                self.queue.put_nowait(self._partial.decode(errors="replace"))
            self.queue.put_nowait(None)
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self.queue.put_nowait(line.decode(errors="replace"))


class Commands:
    """Reads the driver's JSON command lines from stdin without blocking the event loop."""

    def __init__(self):
        self.lines = StdinLines()

    async def next(self, timeout):
        while True:
            line = await asyncio.wait_for(self.lines.queue.get(), timeout)
            if line is None:
                self.lines.queue.put_nowait(None)  # EOF stays EOF
                return {"cmd": "eof"}
            if line.strip():
                return json.loads(line)


def session_config(group, mls=True, reliable=True):
    """The session settings of every driver: reliable = 5 retries every 1 s; MLS with full AAD checks."""
    return slim.SessionConfig(
        session_type=slim.SessionType.GROUP if group else slim.SessionType.POINT_TO_POINT,
        max_retries=5 if reliable else None,
        interval=seconds(1) if reliable else None,
        metadata={},
        mls_settings=mls_settings() if mls else None,
    )


def is_timeout(exc):
    """Whether an exception from `get_message_async` is only the poll timing out."""
    text = str(exc).lower()
    return "timeout" in text or "timed out" in text


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
    private_stdout()

    async def wrapped():
        try:
            await main()
        except Exception as e:  # report, never hang
            emit("error", message=f"{type(e).__name__}: {e}")
            sys.stdout.flush()
            raise SystemExit(1)
    asyncio.run(wrapped())
