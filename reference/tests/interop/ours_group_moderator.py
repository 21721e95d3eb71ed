"""(d) Our client as the moderator of an MLS group with two real apps; it removes one of them.

    ours_group_moderator.py --node URL --ours PATH|real

ours runs `slim-client --json --name org/interop/ours ... group org/interop/chat-d --invite
org/interop/p1 --invite org/interop/p2 --mls --reliable`, driven through its stdin. The real
participants p1 and p2 (realpeer.py) listen. Once ours reported both "member_joined" events,
phase 1: all three send 10 messages (ours' as stdin lines); each must get the other 20 exactly
once. Then ours reads `remove org/interop/p2`: it must report "member_left" for p2, and p2 must see
its session end. Phase 2: ours and p1 send 10 more each; each must get the other's 10, and p2 must
get none. Finally stdin EOF: ours must close the group and exit 0 after "done".

Last stdout line: a JSON summary {"scenario": "ours_group_moderator", "ok": bool, "members":
{role: {"phase1", "phase2"}}, "p2_received_after_removal": n, "p2_saw_session_end": bool, ...};
exit code 0 iff ok.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ours as O  # noqa: E402
from ours_group_member import stats  # noqa: E402

NAMES = {"ours": "org/interop/ours", "p1": "org/interop/p1", "p2": "org/interop/p2"}
CHANNEL = "org/interop/chat-d"
K = 10
T = 60


def main():
    a = O.common_args(__doc__).parse_args()

    async def body(summary, workers, holder):
        p1 = await O.real_peer(workers, a.node, "p1", NAMES["p1"])
        p2 = await O.real_peer(workers, a.node, "p2", NAMES["p2"])
        for w in (p1, p2):
            await w.send(cmd="listen")
        ours = holder["ours"] = await O.Ours.start(
            a.ours, a.node, NAMES["ours"],
            ["group", CHANNEL, "--invite", NAMES["p1"], "--invite", NAMES["p2"], "--mls", "--reliable"],
            timeout=T)
        for p in ("p1", "p2"):
            await ours.wait_event("member_joined", 2 * T, lambda e, p=p: O.is_name(e.get("member"), NAMES[p]))
        for w in (p1, p2):
            await w.expect("joined", T)

        # Phase 1: everybody talks.
        await p1.send(cmd="send", prefix="phase1:p1", count=K)
        await p2.send(cmd="send", prefix="phase1:p2", count=K)
        for i in range(K):
            await ours.write(f"phase1:ours:{i}")
        for w in (p1, p2):
            sent = await w.expect("sent", T)
            if sent["error_count"]:
                raise RuntimeError(f"{w.role}: phase1 sends not acknowledged: {sent['errors']}")
        for w in (p1, p2):
            await w.send(cmd="wait_for", prefix="phase1", count=2 * K)
            await w.expect("waited", T + 5)
        try:
            await ours.wait_for(lambda _: len(ours.texts("phase1:")) >= 2 * K, T, "20 phase1 messages")
        except RuntimeError as e:
            summary["ours_phase1_wait"] = str(e)  # judged below from the counts

        # ours removes p2.
        await ours.write(f"remove {NAMES['p2']}")
        await ours.wait_event("member_left", T, lambda e: O.is_name(e.get("member"), NAMES["p2"]))
        try:
            await p2.expect("session_end", T)
        except RuntimeError as e:
            summary["p2_session_end_wait"] = str(e)
        await p2.send(cmd="report")
        before = len((await p2.expect("report", T))["received"])

        # Phase 2: ours and p1 talk; p2 must get nothing.
        await p1.send(cmd="send", prefix="phase2:p1", count=K)
        for i in range(K):
            await ours.write(f"phase2:ours:{i}")
        sent = await p1.expect("sent", T)
        if sent["error_count"]:
            raise RuntimeError(f"p1: phase2 sends not acknowledged: {sent['errors']}")
        await p1.send(cmd="wait_for", prefix="phase2", count=K)
        await p1.expect("waited", T + 5)
        try:
            await ours.wait_for(lambda _: len(ours.texts("phase2:")) >= K, T, "10 phase2 messages")
        except RuntimeError as e:
            summary["ours_phase2_wait"] = str(e)
        # Give stray deliveries to p2 the same chance (bounded) before counting.
        await p2.send(cmd="wait_for", prefix="phase2", count=1, timeout=3)
        await p2.expect("waited", 10)

        # EOF: ours waits for its acks, closes the group and exits 0.
        await ours.close_stdin()
        code = await ours.wait_exit(T)

        reports = {}
        for w in (p1, p2):
            await w.send(cmd="report")
            reports[w.role] = await w.expect("report", T)
        texts = {"ours": ours.texts(), "p1": reports["p1"]["received"], "p2": reports["p2"]["received"]}
        members, problems = {}, []
        for role in ("ours", "p1", "p2"):
            s1 = stats(texts[role], role, "phase1", ("ours", "p1", "p2"))
            s2 = stats(texts[role], role, "phase2", ("ours", "p1") if role != "p2" else ())
            members[role] = {"phase1": s1, "phase2": s2}
            if s1["received"] != s1["expected"] or s1["duplicates"] or s1["unexpected"]:
                problems.append(f"{role} phase1: {s1}")
            if s2["received"] != s2["expected"] or s2["duplicates"] or s2["unexpected"]:
                problems.append(f"{role} phase2: {s2}")  # for p2: any phase2 message at all
        summary["members"] = members
        after = len(texts["p2"]) - before
        summary["p2_received_after_removal"] = after
        summary["p2_saw_session_end"] = reports["p2"]["session_ended"]
        if after:
            problems.append(f"p2 received {after} messages after its removal: {texts['p2'][before:][:10]}")
        if not reports["p2"]["session_ended"]:
            problems.append("p2 did not see its session end after ours removed it")
        sess = ours.of("session")
        if len(sess) != 1 or sess[0].get("group") is not True or sess[0].get("initiator") is not True:
            problems.append(f"ours: expected one group session it created, got {sess}")
        bad = O.senders_mismatch([(e["text"], e.get("from", "")) for e in ours.of("message")], NAMES)
        for role in ("p1", "p2"):
            bad += O.senders_mismatch(list(zip(reports[role]["received"], reports[role]["senders"])), NAMES)
        if bad:
            problems.append(f"sender names do not match: {bad}")
        if ours.of("send_failed"):
            problems.append(f"ours: sends failed: {ours.of('send_failed')[:5]}")
        if code != 0 or not ours.of("done"):
            problems.append(f"ours: exit {code}, done event: {bool(ours.of('done'))}")
        return problems

    O.run_driver("ours_group_moderator", body, a.node, a.ours)


if __name__ == "__main__":
    main()
