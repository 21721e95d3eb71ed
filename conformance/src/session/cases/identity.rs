//! Identity cases: the runner itself plays the peer, with a raw SLIM link and tokens it mints from
//! the spec (SLIM-IDENT-001), and sends DISCOVERY_REQUESTs that are valid except for one defect.
//! The implementation under test (role `receiver`) must answer only the valid ones
//! (SLIM-IDENT-005). Each bad request is followed by a valid one: its reply is the barrier that
//! proves the bad one was not answered (an app handles one peer's commands in order).
//!
//! One group case (roles `moderator`, `participant`) has the runner, a non-member holding a
//! valid token, send a LEAVE_REQUEST to a participant: membership changes come from the
//! moderator only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};
use slim_proto::identity::{app_id, IdentityKey, SharedSecret};
use slim_proto::names::SlimName;
use slim_proto::pb::{self, message::MessageType, SessionMessageType as T};

use super::{spec, CaseFuture};
use crate::client::{Event, Link, Target};
use crate::evidence::FrameLog;
use crate::session::cell::{group, payloads, Cell, SECRET};
use crate::session::driver::{base_name, App, STEP};
use crate::verdict::Failure;

const R: &str = "receiver";

/// The current Unix time in seconds.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What is wrong with a forged request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Defect {
    None,
    Expired,
    WrongSecret,
    ForeignKey,
    Unsigned,
    TamperedPayloadSig,
    NameNotBound,
}

/// The runner as a SLIM app: a raw link through the harness, a key and a name.
pub(super) struct Forger {
    /// Its link, subscribed to `name`.
    pub(super) link: Link,
    /// Its identity key: the key its tokens name and its commands are signed with.
    pub(super) key: IdentityKey,
    /// Its tokens' subject (what revoking it names).
    pub(super) sub: String,
    /// Its full name (the id derives from its token's subject).
    pub(super) name: SlimName,
}

impl Forger {
    /// Connects through the cell's harness as `<org>/session/runner` and subscribes that name.
    pub(super) async fn new(cx: &Cell) -> Result<Forger, Failure> {
        Self::named(cx, "runner").await
    }

    /// Connects through the cell's harness as `<org>/session/<label>` (token subject
    /// `<label>-<seed>`) and subscribes that name.
    pub(super) async fn named(cx: &Cell, label: &str) -> Result<Forger, Failure> {
        let target = Target {
            url: cx.harness.url(),
            tls: None,
            authorization: None,
            strict_mac: true,
        };
        let mut link = Link::connect(&target, label, &FrameLog::new()).await?;
        let key = IdentityKey::generate(&mut OsRng);
        let sub = format!("{label}-{}", cx.seed);
        let parts: Vec<String> = cx.name(label).split('/').map(String::from).collect();
        let name = SlimName::new(&parts[0], &parts[1], &parts[2]).with_id(app_id(&sub));
        link.subscribe(&name, 1).await?;
        Ok(Forger {
            link,
            key,
            sub,
            name,
        })
    }

    /// A fresh token naming our key, with `defect`.
    pub(super) fn token(&self, defect: Defect) -> Result<String, Failure> {
        let secret = if defect == Defect::WrongSecret {
            "another-deployment-secret-of-at-least-32-bytes!!"
        } else {
            SECRET
        };
        let issuer = SharedSecret::new(secret).map_err(|e| Failure::Harness(e.to_string()))?;
        let at = if defect == Defect::Expired {
            now() - 7200
        } else {
            now()
        };
        let pubkey = if defect == Defect::ForeignKey {
            IdentityKey::generate(&mut OsRng).public_bytes().to_vec()
        } else {
            self.key.public_bytes().to_vec()
        };
        issuer
            .issue(
                &self.sub,
                &pubkey,
                SharedSecret::random_nonce(&mut OsRng),
                at,
            )
            .map_err(|e| Failure::Harness(e.to_string()))
    }

    /// A signed command from us to `dst`, with a random message id.
    fn command(
        &self,
        dst: &SlimName,
        session_type: pb::SessionType,
        ty: T,
        session_id: u32,
        payload: pb::command_payload::CommandPayloadType,
        defect: Defect,
    ) -> Result<(pb::Message, u32), Failure> {
        let mid = OsRng.next_u32().max(1);
        let head = Head {
            session_type: session_type as i32,
            session_id,
            message_id: mid,
        };
        Ok((self.command_with(dst, head, ty, payload, defect)?, mid))
    }

    /// A signed command from us to `dst` with the session fields of `head` (a reply reuses the
    /// request's).
    pub(super) fn command_with(
        &self,
        dst: &SlimName,
        head: Head,
        ty: T,
        payload: pb::command_payload::CommandPayloadType,
        defect: Defect,
    ) -> Result<pb::Message, Failure> {
        let src = if defect == Defect::NameNotBound {
            self.name.clone().with_id(self.name.id() ^ 1)
        } else {
            self.name.clone()
        };
        let mut header = slim_proto::messages::header(&src, dst, 1);
        header.identity = self.token(defect)?;
        let mut msg = slim_proto::messages::wrap(MessageType::Publish(pb::Publish {
            header: Some(header),
            session: Some(pb::SessionHeader {
                session_type: head.session_type,
                session_message_type: ty as i32,
                session_id: head.session_id,
                message_id: head.message_id,
            }),
            msg: Some(pb::Content {
                content_type: Some(pb::content::ContentType::CommandPayload(
                    pb::CommandPayload {
                        command_payload_type: Some(payload),
                    },
                )),
            }),
        }));
        if defect != Defect::Unsigned {
            slim_proto::e2e::sign_command(&mut msg, &self.key)
                .map_err(|e| Failure::Harness(e.to_string()))?;
        }
        if defect == Defect::TamperedPayloadSig {
            if let Some(sig) = msg.metadata.get_mut(slim_proto::e2e::PAYLOAD_SIG_KEY) {
                let flipped = if sig.ends_with('A') { 'B' } else { 'A' };
                sig.pop();
                sig.push(flipped);
            }
        }
        Ok(msg)
    }

    /// Sends a DISCOVERY_REQUEST to `dst` with `defect`; returns its message id.
    async fn discover(&self, dst: &SlimName, defect: Defect) -> Result<u32, Failure> {
        let (msg, mid) = self.command(
            dst,
            pb::SessionType::PointToPoint,
            T::DiscoveryRequest,
            OsRng.next_u32() % 1_000_000 + 1,
            pb::command_payload::CommandPayloadType::DiscoveryRequest(
                pb::DiscoveryRequestPayload {},
            ),
            defect,
        )?;
        self.link.send(msg).await?;
        Ok(mid)
    }

    /// Waits for a DISCOVERY_REPLY to `mid`; returns the ids of every other reply seen first.
    async fn await_reply(&mut self, mid: u32, within: Duration) -> Result<Vec<u32>, Failure> {
        let deadline = tokio::time::Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.link.recv(left).await {
                Event::Message(m) => {
                    if let Some(MessageType::Publish(p)) = &m.message_type {
                        if let Some(h) = &p.session {
                            if h.session_message_type == T::DiscoveryReply as i32 {
                                if h.message_id == mid {
                                    return Ok(others);
                                }
                                others.push(h.message_id);
                            }
                        }
                    }
                }
                other => {
                    return Err(Failure::violation_of(
                        "SLIM-IDENT-005",
                        "the app answers a valid, signed DISCOVERY_REQUEST with a DISCOVERY_REPLY",
                        format!(
                            "no reply to the valid request: {}",
                            crate::client::event_text(&other)
                        ),
                    ))
                }
            }
        }
    }
}

/// The session fields a command carries besides its type.
#[derive(Clone, Copy)]
pub(super) struct Head {
    /// Point-to-point or multicast (`pb::SessionType`).
    pub(super) session_type: i32,
    /// The wire session id.
    pub(super) session_id: u32,
    /// The message id.
    pub(super) message_id: u32,
}

/// A bad request, then a valid one; only the valid one may be answered.
fn refuses(cx: Cell, defect: Defect, what: &'static str) -> CaseFuture {
    Box::pin(async move {
        let app = cx.app(R, "b").await?;
        let mut f = Forger::new(&cx).await?;
        if defect == Defect::NameNotBound {
            // The reply to the unbound name must be able to reach us, or the case would pass on
            // silence.
            let unbound = f.name.clone().with_id(f.name.id() ^ 1);
            f.link.subscribe(&unbound, 2).await?;
        }
        let dst = base(&app)?;
        let bad = f.discover(&dst, defect).await?;
        cx.harness.mark(format!(
            "runner sent a DISCOVERY_REQUEST with {what} (id {bad})"
        ));
        let good = f.discover(&dst, Defect::None).await?;
        cx.harness
            .mark(format!("runner sent a valid DISCOVERY_REQUEST (id {good})"));
        let mut others = f.await_reply(good, STEP).await?;
        // A second barrier: an implementation may handle requests concurrently, so the bad one
        // gets the time of one more round trip, sent only once the first good reply is in.
        let again = f.discover(&dst, Defect::None).await?;
        others.extend(f.await_reply(again, STEP).await?);
        if others.contains(&bad) {
            return Err(Failure::violation(
                format!("no DISCOVERY_REPLY to a DISCOVERY_REQUEST with {what}"),
                format!("{} answered it (message id {bad})", app.name),
            ));
        }
        Ok(())
    })
}

fn base(app: &App) -> Result<SlimName, Failure> {
    base_name(&app.name.to_string())
        .parse::<SlimName>()
        .map_err(|e| Failure::Harness(e.to_string()))
}

/// SLIM-IDENT-005: the positive control: a valid request is answered.
pub fn valid_answered(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let app = cx.app(R, "b").await?;
        let mut f = Forger::new(&cx).await?;
        let mid = f.discover(&base(&app)?, Defect::None).await?;
        f.await_reply(mid, STEP).await.map(drop)
    })
}
/// SLIM-IDENT-001: an expired token.
pub fn expired(cx: Cell) -> CaseFuture {
    refuses(cx, Defect::Expired, "a token issued two hours ago")
}
/// SLIM-IDENT-001: a token from another secret.
pub fn wrong_secret(cx: Cell) -> CaseFuture {
    refuses(
        cx,
        Defect::WrongSecret,
        "a token minted with another shared secret",
    )
}
/// SLIM-IDENT-003: signed with a key other than the token's.
pub fn foreign_key(cx: Cell) -> CaseFuture {
    refuses(
        cx,
        Defect::ForeignKey,
        "a header signature by a key other than the one its token names",
    )
}
/// SLIM-IDENT-005: no signatures.
pub fn unsigned(cx: Cell) -> CaseFuture {
    refuses(cx, Defect::Unsigned, "no e2e_header_sig")
}
/// SLIM-IDENT-004: a payload signature that does not verify.
pub fn bad_payload_sig(cx: Cell) -> CaseFuture {
    refuses(
        cx,
        Defect::TamperedPayloadSig,
        "a slim-payload-sig that does not verify",
    )
}
/// SLIM-SESS-002: a source id the token's subject does not derive.
pub fn name_not_bound(cx: Cell) -> CaseFuture {
    refuses(
        cx,
        Defect::NameNotBound,
        "a source name id its token's subject does not derive",
    )
}

/// SLIM-SESS-007: a LEAVE_REQUEST from someone who is not the moderator is ignored.
pub fn non_moderator_leave(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let g = group(&cx, "moderator", "participant", 1, spec(true, true, true)).await?;
        let (p1, s1) = &g.p[0];
        let wire = cx
            .session_frames(None, &[T::GroupWelcome])
            .first()
            .and_then(|e| e.session)
            .map(|s| s.session_id)
            .ok_or_else(|| Failure::Harness("no GROUP_WELCOME in the transcript".into()))?;
        let f = Forger::new(&cx).await?;
        let (msg, mid) = f.command(
            &p1.name,
            pb::SessionType::Multicast,
            T::LeaveRequest,
            wire,
            pb::command_payload::CommandPayloadType::LeaveRequest(pb::LeaveRequestPayload {}),
            Defect::None,
        )?;
        f.link.send(msg).await?;
        cx.harness.mark(format!(
            "runner (not the moderator) sent a LEAVE_REQUEST (id {mid}) to {}",
            p1.name
        ));
        // Barriers: the moderator's next message reaches the participant, and the participant's
        // own next message reaches the moderator; by then a participant that acts on commands in
        // order has answered the forged LEAVE_REQUEST, if it acts on it at all.
        let probe = payloads("still-member", 1);
        g.m.publish(&g.sm, probe.clone(), true, STEP).await?;
        // The probe arrives, or the participant's session ends: whichever comes first.
        let sid = s1.id.clone();
        let ends = |k: &slim_proto::driver::event::Kind| match k {
            slim_proto::driver::event::Kind::Removed(x) => x.session_id == sid,
            slim_proto::driver::event::Kind::SessionClosed(x) => x.session_id == sid,
            slim_proto::driver::event::Kind::Message(m) => {
                m.session_id == sid && m.payload.as_ref() == probe[0].as_slice()
            }
            _ => false,
        };
        p1.wait_event(STEP, ends).await;
        let got = p1.received(s1);
        let reply = payloads("still-here", 1);
        let gone_early = p1.events.snapshot().iter().any(|r| match &r.event {
            slim_proto::driver::event::Kind::Removed(x) => x.session_id == sid,
            slim_proto::driver::event::Kind::SessionClosed(x) => x.session_id == sid,
            _ => false,
        });
        let (sent_back, heard) = if gone_early {
            (Ok(Vec::new()), Vec::new())
        } else {
            let sent = p1.publish(s1, reply.clone(), true, STEP).await;
            (sent, g.m.wait_received(&g.sm, &reply, STEP).await)
        };
        let gone = p1.events.snapshot().iter().any(|r| match &r.event {
            slim_proto::driver::event::Kind::Removed(x) => x.session_id == sid,
            slim_proto::driver::event::Kind::SessionClosed(x) => x.session_id == sid,
            _ => false,
        });
        let name = p1.name.to_string();
        let answered = cx.harness.transcript().iter().any(|e| {
            e.dir == Some(crate::harness::Dir::ToNode)
                && e.session
                    .is_some_and(|h| h.message_type == T::LeaveReply as i32 && h.message_id == mid)
                && e.source
                    .as_deref()
                    .is_some_and(|src| crate::session::cell::same_app(src, &name))
        });
        let observed = if answered {
            Some("it answered the forged LEAVE_REQUEST with a LEAVE_REPLY".to_string())
        } else if gone {
            Some("it left the group".to_string())
        } else if !got.iter().any(|(_, p)| *p == probe[0]) {
            Some("it no longer receives the group's messages".to_string())
        } else if sent_back.is_err() || !heard.iter().any(|(_, p)| *p == reply[0]) {
            Some("its messages no longer reach the group".to_string())
        } else {
            None
        };
        if let Some(observed) = observed {
            return Err(Failure::violation(
                "a participant ignores a LEAVE_REQUEST that does not come from its moderator",
                observed,
            ));
        }
        Ok(())
    })
}

/// The HS256 secret of the JWT cases (loopback tests only).
const JWT_SECRET: &str = "slim-conformance-session-profile-jwt-hs256-secret-0123";

/// SLIM-IDENT-002: two apps with JWT identities (minted by each implementation itself, HS256)
/// open an MLS session and exchange messages; every command on the wire carries a JWT that
/// verifies under the deployment's key, has `sub`, `iat`, `exp` and a `pubkey`, and its `sub`
/// derives the sender's name id (SLIM-SESS-002).
pub fn jwt_session(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        let id =
            || slim_proto::driver::create_app_request::Identity::JwtHs256Secret(JWT_SECRET.into());
        let a = cx.app_with("sender", "a", id()).await?;
        let b = cx.app_with("receiver", "b", id()).await?;
        let s = crate::session::cell::open_p2p(&cx, a, b, spec(false, true, true)).await?;
        let sent = payloads("jwt", 3);
        let out = s.a.publish(&s.sa, sent.clone(), true, STEP).await?;
        let got = s.b.wait_received(&s.sb, &sent, STEP).await;
        crate::session::cell::exactly_once_in_order(
            "SLIM-IDENT-002",
            "the receiver",
            &s.a,
            &sent,
            &got,
        )?;
        crate::session::cell::all_ok("SLIM-REL-006", &out)?;
        let key = slim_proto::identity::JwtKey::hs256(JWT_SECRET);
        let mut checked = 0;
        for e in cx.session_frames(Some(crate::harness::Dir::ToNode), &[]) {
            let Some(h) = e.session else { continue };
            let ty = T::try_from(h.message_type).unwrap_or(T::Unspecified);
            if !slim_proto::e2e::is_command(ty) {
                continue;
            }
            let Some(msg) = e.message() else { continue };
            let token = match &msg.message_type {
                Some(MessageType::Publish(p)) => p
                    .header
                    .as_ref()
                    .map(|h| h.identity.clone())
                    .unwrap_or_default(),
                _ => continue,
            };
            let what = format!(
                "the {} from {}",
                ty.as_str_name(),
                e.source.clone().unwrap_or_default()
            );
            let claims = key.verify(&token, now()).map_err(|err| {
                Failure::violation(
                    format!("{what} carries a JWT with sub, iat, exp and pubkey that verifies under the deployment's HS256 key"),
                    format!("its identity {:?} does not: {err}", abbreviated(&token)),
                )
            })?;
            if claims.iat == 0 || claims.pubkey.is_empty() {
                return Err(Failure::violation(
                    format!("{what} carries a JWT with iat and a pubkey claim"),
                    format!(
                        "iat {} and a pubkey of {} bytes",
                        claims.iat,
                        claims.pubkey.len()
                    ),
                ));
            }
            let src_id = e
                .source
                .as_deref()
                .and_then(|s| s.parse::<SlimName>().ok())
                .map_or(0, |n| n.id());
            if src_id != app_id(&claims.sub) {
                return Err(Failure::violation_of(
                    "SLIM-SESS-002",
                    format!(
                        "{what}: its source name id derives from its JWT's sub {:?}",
                        claims.sub
                    ),
                    format!("the id is {}", slim_proto::names::id_text(src_id)),
                ));
            }
            checked += 1;
        }
        if checked == 0 {
            return Err(Failure::Harness(
                "no command in the transcript to check".into(),
            ));
        }
        cx.note(format!("{checked} commands carried verified JWTs"));
        Ok(())
    })
}

fn abbreviated(token: &str) -> String {
    let head: String = token.chars().take(40).collect();
    if head.len() < token.len() {
        format!("{head}…")
    } else {
        head
    }
}
