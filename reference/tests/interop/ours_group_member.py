"""(c) Our client as a member of a real moderator's MLS group, then removed from it.

    ours_group_member.py --node URL --ours PATH|real

ours runs `slim-client --json --name org/interop/ours ... listen --stdin` (the proposed contract
addition: each stdin line is published on the newest session). A real moderator (realpeer.py)
creates a reliable MLS group on org/interop/chat-c and invites a real participant p1, then ours.
Phase 1: all three send 10 messages (ours' through its stdin); each must get the other 20 exactly
once. The moderator then removes ours: ours must report {"event":"removed"}. Phase 2: moderator
and p1 send 10 more each; each must get the other's 10, and ours must get none of them.

Last stdout line: a JSON summary {"scenario": "ours_group_member", "ok": bool, "members": {role:
{"phase1", "phase2"}}, "ours_removed_event": bool, "ours_received_after_removal": n, ...};
exit code 0 iff ok.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ours as O  # noqa: E402

NAMES = {"moderator": "org/interop/moderator", "p1": "org/interop/p1", "ours": "org/interop/ours"}
CHANNEL = "org/interop/chat-c"
K = 10
T = 60


def stats(texts, role, phase, senders):
    want = {f"{phase}:{s}" for s in senders if s != role}
    out = {"expected": K * len(want), "received": 0, "duplicates": 0}
    for prefix in sorted(want):
        t = O.tally(texts, prefix, K)
        out["received"] += t["received"]
        out["duplicates"] += t["duplicates"]
    out["unexpected"] = O.unexpected([t for t in texts if t.startswith(phase + ":")], want)
    return out


def main():
    a = O.common_args(__doc__).parse_args()

    async def body(summary, workers, holder):
        mod = await O.real_peer(workers, a.node, "moderator", NAMES["moderator"])
        p1 = await O.real_peer(workers, a.node, "p1", NAMES["p1"])
        ours = holder["ours"] = await O.Ours.start(a.ours, a.node, NAMES["ours"], ["listen", "--stdin"], timeout=T)
        await ours.wait_event("ready", T)
        await p1.send(cmd="listen")
        await mod.send(cmd="group", channel=CHANNEL, invite=[NAMES["p1"], NAMES["ours"]])
        await mod.expect("joined", 2 * T)  # both invitations done (acks of welcome and updates in)
        await p1.expect("joined", T)
        await ours.wait_event("session", T, lambda e: e.get("group") is True)

        # Phase 1: everybody talks.
        await mod.send(cmd="send", prefix="phase1:moderator", count=K)
        await p1.send(cmd="send", prefix="phase1:p1", count=K)
        for i in range(K):
            await ours.write(f"phase1:ours:{i}")
        for w in (mod, p1):
            sent = await w.expect("sent", T)
            if sent["error_count"]:
                raise RuntimeError(f"{w.role}: phase1 sends not acknowledged: {sent['errors']}")
        for w in (mod, p1):
            await w.send(cmd="wait_for", prefix="phase1", count=2 * K)
            await w.expect("waited", T + 5)
        try:
            await ours.wait_for(lambda _: len(ours.texts("phase1:")) >= 2 * K, T, "20 phase1 messages")
        except RuntimeError as e:
            summary["ours_phase1_wait"] = str(e)  # judged below from the counts

        # The moderator removes ours.
        await mod.send(cmd="remove", who=NAMES["ours"])
        await mod.expect("removed", T)
        try:
            await ours.wait_event("removed", T)
        except RuntimeError as e:
            summary["ours_removed_wait"] = str(e)
        before = len(ours.texts())

        # Phase 2: moderator and p1 talk; ours must get nothing.
        await mod.send(cmd="send", prefix="phase2:moderator", count=K)
        await p1.send(cmd="send", prefix="phase2:p1", count=K)
        for w in (mod, p1):
            sent = await w.expect("sent", T)
            if sent["error_count"]:
                raise RuntimeError(f"{w.role}: phase2 sends not acknowledged: {sent['errors']}")
        for w in (mod, p1):
            await w.send(cmd="wait_for", prefix="phase2", count=K)
            await w.expect("waited", T + 5)
        # Give stray deliveries to ours the same chance (bounded) before counting.
        try:
            await ours.wait_for(lambda _: ours.texts("phase2:"), 3, "a phase2 message")
        except RuntimeError:
            pass

        reports = {}
        for w in (mod, p1):
            await w.send(cmd="report")
            reports[w.role] = await w.expect("report", T)
        texts = {"moderator": reports["moderator"]["received"], "p1": reports["p1"]["received"], "ours": ours.texts()}
        members, problems = {}, []
        for role in ("moderator", "p1", "ours"):
            s1 = stats(texts[role], role, "phase1", ("moderator", "p1", "ours"))
            s2 = stats(texts[role], role, "phase2", ("moderator", "p1") if role != "ours" else ())
            members[role] = {"phase1": s1, "phase2": s2}
            if s1["received"] != s1["expected"] or s1["duplicates"] or s1["unexpected"]:
                problems.append(f"{role} phase1: {s1}")
            if s2["received"] != s2["expected"] or s2["duplicates"] or s2["unexpected"]:
                problems.append(f"{role} phase2: {s2}")  # for ours: any phase2 message at all
        summary["members"] = members
        after = len(ours.texts()) - before
        summary["ours_received_after_removal"] = after
        summary["ours_removed_event"] = bool(ours.of("removed"))
        if after:
            problems.append(f"ours received {after} messages after its removal: {ours.texts()[before:][:10]}")
        if not ours.of("removed"):
            problems.append("ours did not report {\"event\":\"removed\"} after the moderator removed it")
        sess = ours.of("session")
        if len(sess) != 1 or sess[0].get("group") is not True or sess[0].get("initiator") is not False:
            problems.append(f"ours: expected one group session it was invited to, got {sess}")
        bad = O.senders_mismatch([(e["text"], e.get("from", "")) for e in ours.of("message")], NAMES)
        for role in ("moderator", "p1"):
            bad += O.senders_mismatch(list(zip(reports[role]["received"], reports[role]["senders"])), NAMES)
        if bad:
            problems.append(f"sender names do not match: {bad}")
        if ours.of("send_failed"):
            problems.append(f"ours: sends failed: {ours.of('send_failed')[:5]}")
        return problems

    O.run_driver("ours_group_member", body, a.node, a.ours)


if __name__ == "__main__":
    main()
