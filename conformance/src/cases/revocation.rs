//! JWT bearer verification and revocation at the node (SLIM-REV-001..006).
//!
//! The runner plays the deployment's identity provider ([`crate::jwt`]): it mints the tokens
//! every link of these cases authenticates with, valid ones and ones that fail exactly one
//! check, and revokes them through the target's mechanism ([`crate::revoke`]). Every case uses
//! subjects, token ids and kids derived from its own name prefix, so no two cases (and no two
//! runs) revoke each other's credentials.
//!
//! Knowing when a node has learned of a revocation is itself an event here: a *sentinel*, a live
//! stream authenticated with the credential about to be revoked, ends when the node applies the
//! revocation (SLIM-REV-004). Cases that judge something else (refusal at call setup, a malformed
//! list) wait for that end, bounded by [`PROMPT`], before they judge.
//!
//! Timing bound (SLIM-REV-004): "within 100 ms of a node learning of a revocation", where the
//! requirement's own reason counts one reload period of a watched list inside those 100 ms. So the
//! runner measures from the instant the revocation was made on its side (the list file renamed
//! into place, or `--revoke-cmd` returned) and allows [`IMMEDIATE`] plus the one-way delay the
//! runner itself injects with `--delay-ms` (the closing status crosses the runner's own proxy
//! once). Nothing else is added: on loopback the status's transit is far below a millisecond.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonic::{Code, Status};

use super::{anycasts_all_reach, expect_payload, send_text, subscribe_marker, PROMPT};
use crate::case::{Case, Ctx, Failure, Need};
use crate::client::{status_text, Event, Link, Target};
use crate::jwt::{Issuer, TokenSpec};
use crate::revoke::{Claim, RevocationSetup, Revoker};

/// SLIM-REV-004's "immediately": 100 ms from the revocation to the stream's end, one reload
/// period of the node included (see the module documentation).
pub(crate) const IMMEDIATE: Duration = Duration::from_millis(100);

/// At most one call per this period while a negative check keeps calling (a rate limit, not a
/// wait: every verdict comes from a call's outcome).
const PACE: Duration = Duration::from_millis(10);

/// Lifetime of the tokens the cases mint (long enough for any case, short enough that a leaked
/// one is worthless soon).
const LIFETIME_SECS: u64 = 600;

/// Seconds since the Unix epoch on the runner's clock.
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The run's revocation setup; the runner checks each case's needs first, so its absence here is
/// a harness error.
fn setup(cx: &Ctx) -> Result<&RevocationSetup, Failure> {
    cx.revocation()
        .ok_or_else(|| Failure::Harness("no revocation setup for a revocation case".into()))
}

fn issuer(cx: &Ctx) -> Result<&Issuer, Failure> {
    setup(cx)?
        .issuer
        .as_ref()
        .ok_or_else(|| Failure::Harness("no JWT signing key for a JWT case".into()))
}

fn revoker(cx: &Ctx) -> Result<&Revoker, Failure> {
    setup(cx)?
        .revoker
        .as_ref()
        .ok_or_else(|| Failure::Harness("no revocation mechanism for a revocation case".into()))
}

/// The bound on a revoked stream's end as the runner sees it: [`IMMEDIATE`] plus the runner's
/// own one-way delay.
fn end_bound(cx: &Ctx) -> Duration {
    IMMEDIATE + cx.revocation().map_or(Duration::ZERO, |s| s.one_way_delay)
}

/// A unique value for this case: `<case prefix>-<what>`.
fn unique(cx: &Ctx, what: &str) -> String {
    format!("{}-{what}", cx.org())
}

/// A valid token of subject `<prefix>-<who>` with token id `<prefix>-<who>-<n>`.
fn valid(cx: &Ctx, who: &str, n: u32) -> Result<TokenSpec, Failure> {
    let sub = unique(cx, who);
    Ok(issuer(cx)?.valid(&sub, &format!("{sub}-{n}"), now_unix(), LIFETIME_SECS))
}

/// How the target answered a call.
enum Call {
    /// Accepted and negotiated: a usable link (boxed: a link is large, a status small).
    Accepted(Box<Link>),
    /// Refused at call setup, or ended before any negotiation reply, with this status.
    Refused(Status),
}

/// Opens a call to the revocation target with `authorization` and negotiates if it is accepted.
async fn call(cx: &Ctx, authorization: &str, label: &str) -> Result<Call, Failure> {
    let s = setup(cx)?;
    let target = Target {
        url: s.url.clone(),
        tls: s.tls.clone(),
        authorization: Some(authorization.to_string()),
        strict_mac: s.strict_mac,
    };
    let mut link = match Link::open(&target, label, &cx.log).await {
        Ok(link) => link,
        Err(Failure::Rejected(status)) => return Ok(Call::Refused(status)),
        Err(f) => return Err(f),
    };
    match link.negotiate_or_end(|_| {}).await? {
        Ok(_) => Ok(Call::Accepted(Box::new(link))),
        Err(status) => Ok(Call::Refused(status)),
    }
}

/// A link authenticated with `spec`, which the target must accept (SLIM-REV-001).
async fn connect(cx: &Ctx, spec: &TokenSpec, label: &str) -> Result<Link, Failure> {
    let bearer = issuer(cx)?.bearer(spec);
    match call(cx, &bearer, label).await? {
        Call::Accepted(link) => Ok(*link),
        Call::Refused(s) => Err(Failure::violation_of(
            "SLIM-REV-001",
            format!("{label}'s call with a valid token (signed with the configured key, exp in the future, iss and aud as configured) is accepted"),
            format!("refused: {}", status_text(&s)),
        )),
    }
}

/// Whether `message` contains one of `words`, ignoring case.
///
/// A single word must be a whole word of the message (`iss` is not in "missing", which a refusal
/// without a message of its own says: "grpc-status header missing"); a phrase must appear as
/// consecutive whole words.
fn names_any(message: &str, words: &[&str]) -> bool {
    let tokens: Vec<String> = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let text = format!(" {} ", tokens.join(" "));
    words.iter().any(|w| text.contains(&format!(" {w} ")))
}

/// Expects the call with `authorization` to be refused with UNAUTHENTICATED whose message says
/// one of `words` (what the requirement makes it name).
async fn expect_refused(
    cx: &Ctx,
    authorization: &str,
    label: &str,
    what: &str,
    words: &[&str],
) -> Result<Status, Failure> {
    let expected = format!(
        "the call {what} is refused with UNAUTHENTICATED, its message saying {}",
        words
            .iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    match call(cx, authorization, label).await? {
        Call::Accepted(_) => Err(Failure::violation(
            expected,
            "the call was accepted and its link negotiated",
        )),
        Call::Refused(s) if s.code() == Code::Unauthenticated && names_any(s.message(), words) => {
            Ok(s)
        }
        Call::Refused(s) => Err(Failure::violation(
            expected,
            format!("refused with {}", status_text(&s)),
        )),
    }
}

/// Waits (bounded by `within`) for `link`'s stream to end, skipping messages; returns the status
/// and when it arrived, or `None` if it stayed open.
async fn await_end(link: &mut Link, within: Duration) -> Option<(Status, Instant)> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match link.recv(left).await {
            Event::Ended(s) => return Some((s, Instant::now())),
            Event::Message(_) => continue,
            Event::Silent => return None,
        }
    }
}

/// Revokes `value` of `claim`; a mechanism that fails is a harness error.
async fn revoke(cx: &Ctx, claim: Claim, value: &str) -> Result<Instant, Failure> {
    revoker(cx)?
        .revoke(claim, value)
        .await
        .map_err(|e| Failure::Harness(e.to_string()))
}

/// After a revocation made at `made`: waits (bounded by [`PROMPT`]) for the sentinel's stream to
/// end, the sign that the node has learned of it, and notes when. A node that leaves live
/// streams open (SLIM-REV-004, judged by its own case) is given the whole bound.
async fn await_sentinel(cx: &Ctx, sentinel: &mut Link, made: Instant) {
    match await_end(sentinel, PROMPT).await {
        Some((s, at)) => cx.note(format!(
            "the sentinel stream ended {} ms after the revocation ({})",
            (at - made).as_millis(),
            status_text(&s)
        )),
        None => cx.note(format!(
            "the sentinel stream stayed open for {PROMPT:?} after the revocation (SLIM-REV-004 is judged by revocation/live-stream-ended)"
        )),
    }
}

/// The words a refusal for a failed check must contain (SLIM-REV-001 "naming the check").
mod words {
    pub const SIGNATURE: &[&str] = &["signature"];
    pub const EXPIRED: &[&str] = &["expired", "expiry", "exp"];
    pub const NOT_YET_VALID: &[&str] = &["nbf", "not yet valid", "not before"];
    pub const ISSUER: &[&str] = &["iss", "issuer"];
    pub const AUDIENCE: &[&str] = &["aud", "audience"];
    pub const REVOKED: &[&str] = &["revoked"];
}

/// A token that fails one check (SLIM-REV-001) is refused naming it; the check's case.
fn refused_token(
    id: &str,
    title: &str,
    what: &'static str,
    words: &'static [&'static str],
    make: fn(&Ctx) -> Result<String, Failure>,
) -> Case {
    Case::new(
        id,
        title,
        &["SLIM-REV-001", "SLIM-REV-009"],
        move |cx: Ctx| async move {
            let bearer = make(&cx)?;
            // SLIM-REV-001: refused with UNAUTHENTICATED. SLIM-REV-009 (SHOULD): the message names
            // the check and does not quote the token; a node that refuses without a word is a WARN.
            let expected = format!("the call {what} is refused with UNAUTHENTICATED");
            match call(&cx, &bearer, "A").await? {
                Call::Accepted(_) => {
                    return Err(Failure::violation(
                        expected,
                        "the call was accepted and its link negotiated",
                    ))
                }
                Call::Refused(s) if s.code() != Code::Unauthenticated => {
                    return Err(Failure::violation(
                        expected,
                        format!("refused with {}", status_text(&s)),
                    ))
                }
                Call::Refused(s) => {
                    let token = bearer.strip_prefix("Bearer ").unwrap_or(&bearer);
                    if s.message().contains(token) {
                        return Err(Failure::violation_of(
                            "SLIM-REV-009",
                            "the refusal does not quote the token",
                            "the status message contains the token",
                        ));
                    }
                    if !names_any(s.message(), words) {
                        return Err(Failure::violation_of(
                            "SLIM-REV-009",
                            format!(
                                "the refusal's message names the failed check ({})",
                                words.join(" or ")
                            ),
                            format!("refused with {}", status_text(&s)),
                        ));
                    }
                }
            }
            // The refusal is the token's, not the node's: a valid token is still accepted.
            connect(&cx, &valid(&cx, "control", 1)?, "B")
                .await
                .map(|_| ())
        },
    )
    .needs(Need::Jwt)
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        // Catches: a node that refuses every JWT (wrong algorithm handling, a key it cannot
        // use, a clock off by hours), which would make every refusal below pass vacuously.
        Case::new(
            "revocation/valid-token-accepted",
            "a valid JWT bearer token is accepted: negotiation, subscriptions and routing work",
            &["SLIM-REV-001"],
            |cx: Ctx| async move {
                let name = cx.name("alice", Some(1));
                let mut a = connect(&cx, &valid(&cx, "alice", 1)?, "A").await?;
                a.subscribe(&name, 1).await?;
                let b = connect(&cx, &valid(&cx, "bob", 1)?, "B").await?;
                send_text(&b, &cx.name("bob", Some(1)), &name, "hello-alice").await?;
                expect_payload(&mut a, "hello-alice").await.map(|_| ())
            },
        )
        .needs(Need::Jwt),
        // Catches: a node that decodes the token without verifying its signature (or verifies
        // it with any key), so anyone can mint tokens.
        refused_token(
            "revocation/bad-signature-refused",
            "a token signed with another key is refused with UNAUTHENTICATED naming the signature",
            "with a token signed by a key the node does not know",
            words::SIGNATURE,
            |cx| {
                let i = issuer(cx)?;
                Ok(format!(
                    "Bearer {}",
                    i.sign_with(&i.key.another_like(), &valid(cx, "forger", 1)?)
                ))
            },
        ),
        // Catches: a node that ignores exp (or reads it in milliseconds), admitting old tokens.
        refused_token(
            "revocation/expired-refused",
            "a token whose exp has passed is refused with UNAUTHENTICATED saying it expired",
            "with a token that expired an hour ago",
            words::EXPIRED,
            |cx| {
                // An hour, not a minute: a node may allow some leeway for clock skew (RFC 7519
                // §4.1.4; the real node's JWT library allows 60 s), and this case is about exp
                // being checked at all.
                let i = issuer(cx)?;
                let spec = valid(cx, "late", 1)?
                    .set("iat", now_unix().saturating_sub(7200))
                    .set("exp", now_unix().saturating_sub(3600));
                Ok(i.bearer(&spec))
            },
        ),
        // Catches: a node that ignores nbf, admitting tokens issued for later.
        refused_token(
            "revocation/not-yet-valid-refused",
            "a token whose nbf is in the future is refused with UNAUTHENTICATED naming nbf",
            "with a token valid only from an hour from now",
            words::NOT_YET_VALID,
            |cx| {
                let i = issuer(cx)?;
                let spec = valid(cx, "early", 1)?
                    .set("nbf", now_unix() + 3600)
                    .set("exp", now_unix() + 7200);
                Ok(i.bearer(&spec))
            },
        ),
        // Catches: a node that does not compare iss, accepting tokens of another identity
        // provider that happens to share a key (or a JWKS).
        refused_token(
            "revocation/wrong-issuer-refused",
            "a token from another issuer is refused with UNAUTHENTICATED naming iss",
            "with a token whose iss is not the configured issuer",
            words::ISSUER,
            |cx| {
                let i = issuer(cx)?;
                let iss = format!("not-{}", i.issuer.as_deref().unwrap_or("the-issuer"));
                Ok(i.bearer(&valid(cx, "elsewhere", 1)?.set("iss", iss)))
            },
        )
        .needs(Need::JwtIssuer),
        // Catches: a node that does not check aud, accepting a token minted for another service.
        refused_token(
            "revocation/wrong-audience-refused",
            "a token for another audience is refused with UNAUTHENTICATED naming aud",
            "with a token whose aud is not the configured audience",
            words::AUDIENCE,
            |cx| {
                let i = issuer(cx)?;
                let aud = format!("not-{}", i.audience.as_deref().unwrap_or("the-audience"));
                Ok(i.bearer(&valid(cx, "other-service", 1)?.set("aud", aud)))
            },
        )
        .needs(Need::JwtAudience),
        // Catches: a node that applies a revocation to open streams but does not consult the
        // list when a call is set up, so a revoked token simply reconnects.
        revoked_before_call(
            "revocation/revoked-jti-refused",
            "a call with a token whose jti is revoked is refused with UNAUTHENTICATED saying revoked",
            Claim::Jti,
        ),
        // Catches: a node that revokes only the exact token (jti) even when the list names the
        // subject, so a compromised agent gets a fresh token and is back.
        revoked_before_call(
            "revocation/revoked-sub-refused",
            "after its sub is revoked, a new token of that subject is refused with UNAUTHENTICATED saying revoked",
            Claim::Sub,
        ),
        live_stream_ended(),
        expiry_ends_stream(),
        malformed_list(),
        // Last: a kid given with --jwt-spare-kid stays revoked on a --revoke-cmd target.
        // Catches: a node that ignores kid entries, so retiring a leaked signing key admits
        // every token it signed.
        revoked_before_call(
            "revocation/revoked-kid-refused",
            "after a kid is revoked, a new token signed under it is refused with UNAUTHENTICATED saying revoked",
            Claim::Kid,
        ),
    ]
}

/// SLIM-REV-003 (and SLIM-REV-002 for `claim`): a sentinel stream with a token carrying the
/// value is accepted; the value is revoked; once the sentinel ended (the node learned), a call
/// with a token carrying the value (the same token for a jti, a fresh one for a sub or a kid) is
/// refused saying revoked, and a token carrying none of the revoked values is still accepted.
fn revoked_before_call(id: &str, title: &str, claim: Claim) -> Case {
    Case::new(
        id,
        title,
        &["SLIM-REV-003", "SLIM-REV-002"],
        move |cx: Ctx| async move {
            let i = issuer(&cx)?;
            let spare = setup(&cx)?
                .spare_kid
                .clone()
                .unwrap_or_else(|| unique(&cx, "kid"));
            let first = match claim {
                Claim::Kid => valid(&cx, "keyholder", 1)?.kid(&spare),
                _ => valid(&cx, "mallory", 1)?,
            };
            let value = match claim {
                Claim::Jti => format!("{}-1", unique(&cx, "mallory")),
                Claim::Sub => unique(&cx, "mallory"),
                Claim::Kid => spare.clone(),
            };
            let mut sentinel = match call(&cx, &i.bearer(&first), "S").await? {
                Call::Accepted(link) => *link,
                Call::Refused(s) if claim == Claim::Kid => {
                    return Err(Failure::Unsupported(format!(
                        "the target refuses a token with kid {spare:?} ({}); pass --jwt-spare-kid KID, a kid it accepts that the run may revoke",
                        status_text(&s)
                    )))
                }
                Call::Refused(s) => {
                    return Err(Failure::violation_of(
                        "SLIM-REV-001",
                        "a valid token is accepted before it is revoked",
                        format!("refused: {}", status_text(&s)),
                    ))
                }
            };
            let made = revoke(&cx, claim, &value).await?;
            await_sentinel(&cx, &mut sentinel, made).await;
            let again = match claim {
                Claim::Jti => first.clone(),
                Claim::Sub => valid(&cx, "mallory", 2)?,
                Claim::Kid => valid(&cx, "keyholder-too", 1)?.kid(&spare),
            };
            let what = match claim {
                Claim::Jti => format!("with the token whose jti {value:?} was revoked"),
                Claim::Sub => format!("with a new token of the revoked subject {value:?}"),
                Claim::Kid => format!("with a new token under the revoked kid {value:?}"),
            };
            let status =
                expect_refused(&cx, &i.bearer(&again), "A", &what, words::REVOKED).await?;
            cx.note(format!("refused: {}", status_text(&status)));
            // The revocation applies to what carries the value, not to everyone.
            connect(&cx, &valid(&cx, "bystander", 1)?, "B")
                .await
                .map_err(|f| f.context("after the revocation"))?;
            Ok(())
        },
    )
    .needs(Need::Jwt)
    .needs(Need::Revoke)
}

/// SLIM-REV-004. Catches: a node that checks the list only at call setup (a revoked agent keeps
/// its open stream), one that ends the stream late (a list reloaded every few seconds), one that
/// ends it without saying why, and one that forgets to remove the stream's subscriptions (the
/// route leaks: anycasts to a name it shared go to a dead link).
/// How many times SLIM-REV-004's latency is measured before an overrun is a violation: the bound
/// is 100 ms and a node with a 50 ms reload period has half of it to spare, so one trial over it
/// on a machine starved for CPU says nothing about the node; a node that overruns three trials in
/// a row does.
const TRIALS: usize = 3;

/// Whether any trial met the bound.
fn meets(trials: &[Duration], bound: Duration) -> bool {
    trials.iter().any(|t| *t <= bound)
}

/// One more SLIM-REV-004 measurement: a fresh link with its own token (jti `…-retry<n>`), revoked;
/// the time from the revocation to the stream's end with UNAUTHENTICATED saying revoked.
async fn retry_latency(cx: &Ctx, n: usize) -> Result<Duration, Failure> {
    let who = format!("retry{n}");
    let mut link = connect(cx, &valid(cx, &who, 1)?, &format!("R{n}")).await?;
    let jti = format!("{}-1", unique(cx, &who));
    let made = revoke(cx, Claim::Jti, &jti).await?;
    match await_end(&mut link, PROMPT).await {
        None => Err(Failure::violation(
            format!("R{n}'s stream ends after the revocation of its token (jti {jti:?})"),
            format!("the stream stayed open for {PROMPT:?}"),
        )),
        Some((status, _))
            if status.code() != Code::Unauthenticated
                || !names_any(status.message(), words::REVOKED) =>
        {
            Err(Failure::violation(
                format!("R{n}'s stream ends with UNAUTHENTICATED saying it was revoked"),
                format!("it ended with {}", status_text(&status)),
            ))
        }
        Some((_, at)) => Ok(at - made),
    }
}

fn live_stream_ended() -> Case {
    Case::new(
        "revocation/live-stream-ended",
        "a revoked credential's open stream ends with UNAUTHENTICATED within 100 ms, its routes go, other streams stay",
        &["SLIM-REV-004", "SLIM-REV-003"],
        |cx: Ctx| async move {
            let i = issuer(&cx)?;
            let shared = cx.name("shared", Some(1));
            let own = cx.name("mallory", Some(1));
            let other = cx.name("carol", Some(1));
            let mallory = valid(&cx, "mallory", 1)?;
            // R: the credential to revoke; V: another subscriber of the same name; U: an
            // unaffected subject with its own name; P: the publisher.
            let mut r = connect(&cx, &mallory, "R").await?;
            r.subscribe(&shared, 1).await?;
            r.subscribe(&own, 2).await?;
            let mut v = connect(&cx, &valid(&cx, "victor", 1)?, "V").await?;
            v.subscribe(&shared, 1).await?;
            subscribe_marker(&cx, &mut v, 2).await?;
            let mut u = connect(&cx, &valid(&cx, "carol", 1)?, "U").await?;
            u.subscribe(&other, 1).await?;
            let p = connect(&cx, &valid(&cx, "peggy", 1)?, "P").await?;
            let src = cx.name("peggy", Some(1));
            // Before: R's link works.
            send_text(&p, &src, &own, "before").await?;
            expect_payload(&mut r, "before").await?;

            let jti = format!("{}-1", unique(&cx, "mallory"));
            let made = revoke(&cx, Claim::Jti, &jti).await?;
            let bound = end_bound(&cx);
            let Some((status, at)) = await_end(&mut r, PROMPT).await else {
                return Err(Failure::violation(
                    format!("R's stream ends within {bound:?} of the revocation of its token (jti {jti:?})"),
                    format!("the stream stayed open for {PROMPT:?}"),
                ));
            };
            let latency = at - made;
            cx.note(format!(
                "R's stream ended {} ms after the revocation was made (bound {} ms): {}",
                latency.as_millis(),
                bound.as_millis(),
                status_text(&status)
            ));
            if status.code() != Code::Unauthenticated || !names_any(status.message(), words::REVOKED)
            {
                return Err(Failure::violation(
                    "R's stream ends with UNAUTHENTICATED saying it was revoked",
                    format!("it ended with {}", status_text(&status)),
                ));
            }
            if latency > bound {
                // One overrun may be this machine, not the node: measure again with fresh
                // credentials, and fail only if no trial meets the bound (see `TRIALS`).
                let mut trials = vec![latency];
                while trials.len() < TRIALS && !meets(&trials, bound) {
                    trials.push(retry_latency(&cx, trials.len()).await?);
                }
                let shown: Vec<u128> = trials.iter().map(Duration::as_millis).collect();
                if !meets(&trials, bound) {
                    return Err(Failure::violation(
                        format!("a revoked stream ends within {bound:?} of the revocation"),
                        format!("in {} trials it ended {shown:?} ms after the revocation", trials.len()),
                    ));
                }
                cx.note(format!(
                    "the first trial overran the bound; trials took {shown:?} ms, the last within it"
                ));
            }
            // Its subscriptions are removed: every anycast to the name it shared reaches V.
            anycasts_all_reach(&cx, &p, &shared, &mut v, 4, "R's revocation").await?;
            // Other subjects' streams keep working.
            send_text(&p, &src, &other, "still-here").await?;
            expect_payload(&mut u, "still-here")
                .await
                .map_err(|f| f.context("U (another subject) after R's revocation"))?;
            // And the revoked token cannot come back (SLIM-REV-003).
            expect_refused(
                &cx,
                &i.bearer(&mallory),
                "R2",
                "with the revoked token",
                words::REVOKED,
            )
            .await
            .map_err(|f| match f {
                Failure::Violation {
                    expected, observed, ..
                } => Failure::violation_of("SLIM-REV-003", expected, observed),
                other => other,
            })?;
            Ok(())
        },
    )
    .needs(Need::Jwt)
    .needs(Need::Revoke)
}

/// SLIM-REV-005. Catches: a node that checks exp only when the call is set up, so a stream
/// outlives its token for as long as the client keeps it; and one that ends it early.
///
/// The token's exp is 2 to 3 s ahead (exp has one-second granularity). The stream must work
/// until then, must not end before exp (judged on the runner's clock, which a node on the same
/// host shares), and must end with UNAUTHENTICATED saying expired within [`IMMEDIATE`] (plus the
/// runner's own delay) after exp: the spec's one bound for "at once", and a node knows an expiry
/// in advance, so it has no reload period to add.
fn expiry_ends_stream() -> Case {
    Case::new(
        "revocation/expiry-ends-stream",
        "a stream whose token expires while open is ended then with UNAUTHENTICATED saying expired",
        &["SLIM-REV-005"],
        |cx: Ctx| async move {
            let exp = now_unix() + 3;
            let exp_at = UNIX_EPOCH + Duration::from_secs(exp);
            let spec = valid(&cx, "shortlived", 1)?.set("exp", exp);
            let name = cx.name("shortlived", Some(1));
            let mut e = connect(&cx, &spec, "E").await?;
            e.subscribe(&name, 1).await?;
            let p = connect(&cx, &valid(&cx, "peggy", 1)?, "P").await?;
            send_text(&p, &cx.name("peggy", Some(1)), &name, "before-exp").await?;
            expect_payload(&mut e, "before-exp")
                .await
                .map_err(|f| f.context("while the token is valid"))?;
            let bound = end_bound(&cx);
            let until = exp_at + bound;
            let left = until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            let Some((status, _)) = await_end(&mut e, left).await else {
                return Err(Failure::violation(
                    format!("E's stream ends within {bound:?} after its token's exp ({exp})"),
                    format!("the stream was still open {bound:?} after exp"),
                ));
            };
            let ended = SystemTime::now();
            match ended.duration_since(exp_at) {
                Ok(after) => cx.note(format!(
                    "E's stream ended {} ms after exp (bound {} ms): {}",
                    after.as_millis(),
                    bound.as_millis(),
                    status_text(&status)
                )),
                Err(early) => {
                    return Err(Failure::violation(
                        "E's stream is not ended while its token is valid (before exp)",
                        format!(
                            "it ended {} ms before exp: {}",
                            early.duration().as_millis(),
                            status_text(&status)
                        ),
                    ))
                }
            }
            if status.code() != Code::Unauthenticated
                || !names_any(status.message(), words::EXPIRED)
            {
                return Err(Failure::violation(
                    "E's stream ends with UNAUTHENTICATED saying the token expired",
                    format!("it ended with {}", status_text(&status)),
                ));
            }
            Ok(())
        },
    )
    .needs(Need::Jwt)
}

/// SLIM-REV-006. Catches: a node that treats a list it cannot parse as empty (or stops
/// enforcing until the next good one), readmitting every agent the list keeps out, and one that
/// chokes on it and refuses everyone.
///
/// A node's reading of a bad file leaves nothing on the wire (its report is a log line, outside
/// what the runner sees), so after writing it the runner keeps calling with the revoked token (at
/// most one call per [`PACE`]) until a call starts after a bounded window: the larger of
/// `--quiet-ms` and the SLIM-REV-004 bound (within which a node reads a new list). Every call
/// must be refused; then a token nobody revoked must be accepted.
/// Only through `--revoke-file`: a command cannot make the node read a malformed list.
fn malformed_list() -> Case {
    Case::new(
        "revocation/malformed-list-keeps-revocations",
        "a revocation list that does not parse changes nothing: the revoked token stays refused",
        &["SLIM-REV-006"],
        |cx: Ctx| async move {
            let i = issuer(&cx)?;
            let mallory = valid(&cx, "mallory", 1)?;
            let bearer = i.bearer(&mallory);
            let mut sentinel = connect(&cx, &mallory, "S").await?;
            let jti = format!("{}-1", unique(&cx, "mallory"));
            let made = revoke(&cx, Claim::Jti, &jti).await?;
            await_sentinel(&cx, &mut sentinel, made).await;
            expect_refused(&cx, &bearer, "A", "with the revoked token", words::REVOKED)
                .await
                .map_err(|f| match f {
                    Failure::Violation {
                        expected, observed, ..
                    } => Failure::violation_of(
                        "SLIM-REV-003",
                        expected,
                        format!("{observed} (before the malformed list was written)"),
                    ),
                    other => other,
                })?;
            let r = revoker(&cx)?;
            let written = r
                .write_malformed()
                .map_err(|e| Failure::Harness(e.to_string()))?;
            let window = cx.quiet.max(end_bound(&cx));
            let verdict = async {
                let mut calls = 0u32;
                let mut pace = tokio::time::interval(PACE);
                loop {
                    pace.tick().await;
                    let started = Instant::now();
                    calls += 1;
                    expect_refused(
                        &cx,
                        &bearer,
                        "A",
                        &format!("with the revoked token, after a malformed list was written (call {calls})"),
                        words::REVOKED,
                    )
                    .await?;
                    // The last call starts after the window: the node had it all to reload.
                    if started.duration_since(written) >= window {
                        break;
                    }
                }
                cx.note(format!(
                    "{calls} calls with the revoked token in the {} ms after the malformed list were all refused",
                    window.as_millis()
                ));
                // Nothing is lost the other way either: a token nobody revoked is accepted.
                connect(&cx, &valid(&cx, "bystander", 1)?, "B")
                    .await
                    .map(|_| ())
                    .map_err(|f| f.context("after the malformed list"))
            }
            .await;
            // Leave the good list in force for the cases that follow, whatever the verdict.
            r.rewrite().map_err(|e| Failure::Harness(e.to_string()))?;
            verdict
        },
    )
    .needs(Need::Jwt)
    .needs(Need::RevokeFile)
}

#[cfg(test)]
mod tests {
    use super::{names_any, words};

    #[test]
    fn a_check_is_named_by_whole_words_only() {
        // What a node that refuses without a message of its own looks like to a client.
        let bare = "grpc-status header missing, mapped from HTTP status code 401";
        for w in [
            words::SIGNATURE,
            words::EXPIRED,
            words::NOT_YET_VALID,
            words::ISSUER,
            words::AUDIENCE,
            words::REVOKED,
        ] {
            assert!(!names_any(bare, w), "{w:?} found in {bare:?}");
        }
        for (message, w) in [
            ("invalid JWT: bad signature", words::SIGNATURE),
            ("invalid JWT: token expired (exp 1, now 2)", words::EXPIRED),
            (
                "invalid JWT: token not yet valid (nbf 5)",
                words::NOT_YET_VALID,
            ),
            ("invalid JWT: wrong issuer: expected \"idp\"", words::ISSUER),
            ("invalid JWT: wrong audience", words::AUDIENCE),
            ("credential revoked: jti \"x\" is revoked", words::REVOKED),
        ] {
            assert!(names_any(message, w), "{w:?} not found in {message:?}");
        }
        assert!(!names_any("an issue occurred", words::ISSUER));
        assert!(!names_any("audit failed", words::AUDIENCE));
    }

    #[test]
    fn an_overrun_fails_only_when_every_trial_overruns() {
        use super::{meets, TRIALS};
        use std::time::Duration;
        let ms = Duration::from_millis;
        let bound = ms(100);
        assert!(meets(&[ms(40)], bound));
        assert!(meets(&[ms(180), ms(45)], bound), "a slow first trial");
        assert!(meets(&[ms(100)], bound), "the bound itself is within it");
        assert!(!meets(&[ms(101), ms(150), ms(300)], bound));
        assert!(!meets(&[], bound));
        assert_eq!(TRIALS, 3);
    }
}
