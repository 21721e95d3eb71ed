"""(a) Our client opens a reliable MLS point-to-point session to a real SLIM app, 100 messages each way.

    ours_send_p2p.py --node URL --ours PATH|real [--count N]

ours runs `slim-client --json --name org/interop/ours --secret S --node URL send org/interop/real
a:ours:0 .. a:ours:N-1 --mls --reliable --expect N`. The real app (realpeer.py) listens, and once
the first message arrived sends its own N (concurrently with receiving). Checks: both sides got all
N of the other exactly once and nothing else, every sender name matches, ours reported N
"delivered" events, no "send_failed", and exited 0 after "done".

Last stdout line: a JSON summary {"scenario": "ours_send_p2p", "ok": bool, "ours_to_real": {...},
"real_to_ours": {...}, "ours_delivered": n, ...}; exit code 0 iff ok.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ours as O  # noqa: E402

REAL = "org/interop/real"
OURS = "org/interop/ours"
T = 60


def main():
    ap = O.common_args(__doc__)
    ap.add_argument("--count", type=int, default=100)
    a = ap.parse_args()
    n = a.count

    async def body(summary, workers, holder):
        real = await O.real_peer(workers, a.node, "real", REAL)
        await real.send(cmd="listen")
        await real.send(cmd="send", prefix="a:real", count=n, after_first=True)
        ours = holder["ours"] = await O.Ours.start(
            a.ours, a.node, OURS, ["send", REAL, *[f"a:ours:{i}" for i in range(n)], "--mls", "--reliable",
                                   "--expect", str(n)], timeout=T)
        await ours.wait_event("session", T)  # fails at once if ours exited
        await real.expect("joined", T)
        code = await ours.wait_exit(3 * T)
        sent = await real.expect("sent", T)
        await real.send(cmd="wait_for", prefix="a:ours", count=n, timeout=10)
        await real.expect("waited", 20)
        await real.send(cmd="report")
        rep = await real.expect("report", T)

        summary["ours_to_real"] = O.tally(rep["received"], "a:ours", n)
        summary["real_to_ours"] = O.tally(ours.texts(), "a:real", n)
        summary["ours_delivered"] = len(ours.of("delivered"))
        summary["ours_send_failed"] = len(ours.of("send_failed"))
        summary["real_send_errors"] = sent["error_count"]
        problems = []
        for d in ("ours_to_real", "real_to_ours"):
            r = summary[d]
            if r["received"] != n:
                problems.append(f"{d}: {r['received']}/{n} delivered, missing {r['missing']}")
            if r["duplicates"]:
                problems.append(f"{d}: {r['duplicates']} duplicates")
        extra = O.unexpected(ours.texts(), {"a:real"}) + O.unexpected(rep["received"], {"a:ours"})
        if extra:
            problems.append(f"unexpected messages: {extra}")
        bad = O.senders_mismatch([(e["text"], e.get("from", "")) for e in ours.of("message")], {"real": REAL})
        bad += O.senders_mismatch(list(zip(rep["received"], rep["senders"])), {"ours": OURS})
        if bad:
            problems.append(f"sender names do not match: {bad}")
        sess = ours.of("session")
        if len(sess) != 1 or sess[0].get("group") is not False or sess[0].get("initiator") is not True:
            problems.append(f"ours: expected one p2p session it initiated, got {sess}")
        if summary["ours_delivered"] != n or summary["ours_send_failed"]:
            problems.append(f"ours: {summary['ours_delivered']}/{n} delivered, {summary['ours_send_failed']} failed")
        if sent["error_count"]:
            problems.append(f"real: {sent['error_count']} sends not acknowledged: {sent['errors']}")
        if code != 0 or not ours.of("done"):
            problems.append(f"ours: exit {code}, done event: {bool(ours.of('done'))}")
        return problems

    O.run_driver("ours_send_p2p", body, a.node, a.ours)


if __name__ == "__main__":
    main()
