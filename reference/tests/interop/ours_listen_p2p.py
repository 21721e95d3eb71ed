"""(b) A real SLIM app opens a reliable MLS point-to-point session to our client; 100 each way (echo).

    ours_listen_p2p.py --node URL --ours PATH|real [--count N]

ours runs `slim-client --json --name org/interop/ours ... listen --echo --count N`. The real app
(realpeer.py) opens the session to org/interop/ours and sends b:real:0 .. b:real:N-1 while
receiving; ours echoes each one back on the same session. Checks: ours got all N exactly once and
nothing else; the real app got all N echoes exactly once and nothing else; sender names match;
ours saw one p2p session it did not initiate, and exited 0 after "done".

Last stdout line: a JSON summary {"scenario": "ours_listen_p2p", "ok": bool, "real_to_ours": {...},
"ours_to_real": {...}, ...}; exit code 0 iff ok.
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
        ours = holder["ours"] = await O.Ours.start(
            a.ours, a.node, OURS, ["listen", "--echo", "--count", str(n)], timeout=T)
        await ours.wait_event("ready", T)
        await real.send(cmd="open", peer=OURS)
        await real.expect("joined", T)
        await real.send(cmd="send", prefix="b:real", count=n)
        sent = await real.expect("sent", 3 * T)
        await real.send(cmd="wait_for", prefix="b:real", count=n, timeout=T)
        await real.expect("waited", T + 10)
        code = await ours.wait_exit(T)
        await real.send(cmd="report")
        rep = await real.expect("report", T)

        summary["real_to_ours"] = O.tally(ours.texts(), "b:real", n)
        summary["ours_to_real"] = O.tally(rep["received"], "b:real", n)  # the echoes
        summary["ours_delivered"] = len(ours.of("delivered"))
        summary["real_send_errors"] = sent["error_count"]
        problems = []
        for d in ("real_to_ours", "ours_to_real"):
            r = summary[d]
            if r["received"] != n:
                problems.append(f"{d}: {r['received']}/{n} delivered, missing {r['missing']}")
            if r["duplicates"]:
                problems.append(f"{d}: {r['duplicates']} duplicates")
        extra = O.unexpected(ours.texts(), {"b:real"}) + O.unexpected(rep["received"], {"b:real"})
        if extra:
            problems.append(f"unexpected messages: {extra}")
        bad = [f"{e['text']} from {e.get('from')}" for e in ours.of("message") if not O.is_name(e.get("from"), REAL)]
        bad += [f"{t} from {s}" for t, s in zip(rep["received"], rep["senders"]) if not O.is_name(s, OURS)]
        if bad:
            problems.append(f"sender names do not match: {bad[:10]}")
        sess = ours.of("session")
        if len(sess) != 1 or sess[0].get("group") is not False or sess[0].get("initiator") is not False:
            problems.append(f"ours: expected one p2p session opened by the real app, got {sess}")
        if ours.of("send_failed"):
            problems.append(f"ours: echoes failed: {ours.of('send_failed')[:5]}")
        if sent["error_count"]:
            problems.append(f"real: {sent['error_count']} sends not acknowledged: {sent['errors']}")
        if code != 0 or not ours.of("done"):
            problems.append(f"ours: exit {code}, done event: {bool(ours.of('done'))}")
        return problems

    O.run_driver("ours_listen_p2p", body, a.node, a.ours)


if __name__ == "__main__":
    main()
