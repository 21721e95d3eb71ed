"""Runs "ours": our client `slim-client --json ...` (or, with `--ours real`, the real-SDK stand-in
slim_client_real.py that speaks the same CLI) as a subprocess, and collects its JSON events.

Every wait is bounded; `stop()` always ends the process (SIGTERM, then SIGKILL).
"""

import asyncio
import json
import os
import signal
import sys

import slimapp

HERE = os.path.dirname(os.path.abspath(__file__))
STAND_IN = os.path.join(HERE, "slim_client_real.py")


def command(ours):
    """argv prefix for `--ours PATH|real`."""
    if ours == "real":
        return [sys.executable, STAND_IN]
    return [os.path.abspath(ours)]


class Ours:
    def __init__(self, proc, argv):
        self.proc = proc
        self.argv = argv
        self.events = []  # every JSON event, in order
        self.noise = []  # stdout lines that are not JSON events
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, ours, node, name, args, timeout=30):
        """Starts ours with the global options (before the subcommand) and `args`."""
        argv = command(ours) + [
            "--json", "--name", name, "--secret", slimapp.SECRET, "--node", node,
            "--timeout", str(timeout),
        ] + list(args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # inherit: its diagnostics reach the test log
        )
        return cls(proc, argv)

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                ev = json.loads(line)
                if not isinstance(ev, dict) or "event" not in ev:
                    raise ValueError
                self.events.append(ev)
            except ValueError:
                self.noise.append(line.decode(errors="replace").rstrip()[:200])
            self.changed.set()
        await self.proc.wait()
        self.changed.set()

    def of(self, kind):
        return [e for e in self.events if e.get("event") == kind]

    def errors(self):
        return [e.get("message") for e in self.of("error")]

    async def wait_for(self, pred, timeout, what):
        """Waits until pred(events) is true; fails (naming `what`) on timeout, an error event or exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if pred(self.events):
                return
            if self.errors():
                raise RuntimeError(f"ours: error event while waiting for {what}: {self.errors()}")
            if self.reader.done():
                raise RuntimeError(f"ours exited (code {self.proc.returncode}) before {what}")
            left = deadline - loop.time()
            if left <= 0:
                raise RuntimeError(f"ours: no {what} within {timeout}s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_event(self, kind, timeout, where=lambda e: True):
        await self.wait_for(lambda evs: any(e.get("event") == kind and where(e) for e in evs), timeout, f"'{kind}' event")
        return next(e for e in self.events if e.get("event") == kind and where(e))

    async def write(self, line):
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()

    async def close_stdin(self):
        try:
            self.proc.stdin.close()
            await self.proc.stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass

    async def wait_exit(self, timeout):
        """Exit code, or raises if ours is still running after `timeout`."""
        try:
            await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        except asyncio.TimeoutError:
            raise RuntimeError(f"ours did not exit within {timeout}s") from None
        return self.proc.returncode

    async def stop(self):
        """Ends ours (always called, also on failure); returns its exit code."""
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
                await self.proc.wait()
        try:
            await asyncio.wait_for(self.reader, 5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        return self.proc.returncode

    def texts(self, prefix=""):
        """Texts of the received messages (in order) starting with `prefix`."""
        return [e.get("text", "") for e in self.of("message") if e.get("text", "").startswith(prefix)]

    def summary(self):
        kinds = {}
        for e in self.events:
            kinds[e["event"]] = kinds.get(e["event"], 0) + 1
        ready = self.of("ready")
        msgs = self.of("message")
        return {
            "events": kinds,
            "exit": self.proc.returncode,
            "errors": self.errors()[:5],
            "name": ready[0].get("name") if ready else None,
            "first_from": msgs[0].get("from") if msgs else None,
            "noise_lines": len(self.noise),  # e.g. SDK log lines on stdout
        }


def tally(texts, prefix, count):
    """Counts `prefix:i` (i < count) in `texts`: how many distinct arrived, duplicates, missing."""
    seen = {}
    for t in texts:
        head, _, seq = t.rpartition(":")
        if head == prefix and seq.isdigit() and int(seq) < count:
            seen[int(seq)] = seen.get(int(seq), 0) + 1
    return {
        "sent": count,
        "received": len(seen),
        "duplicates": sum(n - 1 for n in seen.values()),
        "missing": [i for i in range(count) if i not in seen][:20],
    }


def unexpected(texts, expected_prefixes):
    """Texts that are none of `prefix:i` for the given prefixes (e.g. own echoes, strays)."""
    out = []
    for t in texts:
        head, _, seq = t.rpartition(":")
        if head not in expected_prefixes or not seq.isdigit():
            out.append(t)
    return out[:10]


def run_driver(scenario, body, node, ours):
    """Runs `body(summary, workers, holder)`; always stops workers and ours; prints the summary."""

    async def main():
        summary = {"scenario": scenario, "ok": False, "node": node, "ours": ours}
        workers = []
        holder = {}
        try:
            problems = await body(summary, workers, holder)
            summary["ok"] = not problems
            if problems:
                summary["problems"] = problems
        except Exception as e:
            summary["error"] = f"{type(e).__name__}: {e}"
            # What each real app said last, to tell where it stopped.
            summary["workers"] = {w.role: [ev for ev in w.events if ev.get("event") != "report"][-5:] for w in workers}
        finally:
            if "ours" in holder:
                code = await holder["ours"].stop()
                summary.setdefault("ours_process", holder["ours"].summary())
                summary["ours_process"]["exit"] = code
            await slimapp.stop_all(workers)
        print(json.dumps(summary), flush=True)
        if not summary["ok"]:
            print(f"{scenario} FAILED: {summary.get('error') or summary.get('problems')}", file=sys.stderr)
        return 0 if summary["ok"] else 1

    code = asyncio.run(main())
    sys.stdout.flush()
    os._exit(code)


REALPEER = os.path.join(HERE, "realpeer.py")


async def real_peer(workers, node, role, app_name, timeout=60):
    """Starts a real app worker (realpeer.py) named `app_name` and waits until it is subscribed."""
    w = await slimapp.Worker.start(REALPEER, role, ["--node", node, "--name", app_name])
    workers.append(w)
    await w.expect("ready", timeout)
    return w


def is_name(text, app):
    """Whether `text` names the app `app` (org/ns/app), with or without its id."""
    text = str(text or "")
    return text == app or text.startswith(app + "/")


def senders_mismatch(texts_and_senders, names):
    """Messages whose sender name does not match the sender named in the text ("phase:role:i")."""
    bad = []
    for text, sender in texts_and_senders:
        parts = text.split(":")
        role = parts[-2] if len(parts) >= 3 else None
        want = names.get(role)
        if want and not is_name(sender, want):
            bad.append(f"{text} from {sender}")
    return bad[:10]


def common_args(doc):
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--node", required=True, help="SLIM node URL, e.g. http://127.0.0.1:46357")
    ap.add_argument(
        "--ours", required=True,
        help="path of our slim-client binary, or `real` for the real-SDK stand-in (control experiment)",
    )
    return ap
