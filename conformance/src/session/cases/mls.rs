//! MLS member validation (SLIM-MLS-002): the runner itself plays the invitee of a group, with a
//! raw SLIM link ([`Forger`]), its own shared-secret token and its own MLS key package (openmls,
//! ciphersuite 0x0002). The implementation under test (role `moderator`) creates the group and
//! invites the runner's name; the runner answers DISCOVERY_REQUEST and JOIN_REQUEST itself.
//!
//! - `mls/valid-key-package` (the positive control): the key package's leaf signature key is the
//!   key the credential's token names. The moderator must send a GROUP_WELCOME whose Welcome the
//!   runner can join from; the runner acknowledges it and the Invite call succeeds. This shows
//!   the flow the negative case relies on works, so that case cannot pass on a broken flow.
//! - `mls/foreign-key-package`: the token (valid, minted with the cell's secret) names key K1
//!   (the runner's identity key, which also signs its commands), the leaf signature key is
//!   another key K2 (which signs the key package, so the package itself verifies). The moderator
//!   must refuse the member: no GROUP_WELCOME to it, no GROUP_UPDATE adding it, and its Invite call
//!   fails. The barrier is the Invite call's answer, never silence alone.
//!
//! The key packages are the runner's own (openmls); nothing here calls the reference's session
//! or MLS code.

use std::time::Duration;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, CredentialWithKey, KeyPackage, MlsGroup, MlsGroupJoinConfig,
    MlsMessageBodyIn, MlsMessageIn, MlsMessageOut, StagedWelcome,
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use rand_core::OsRng;
use slim_proto::identity::{IdentityKey, SharedSecret};
use slim_proto::names::SlimName;
use slim_proto::pb::SessionMessageType as T;
use slim_proto::pb::{self, command_payload::CommandPayloadType as Cmd, message::MessageType};

use super::identity::{Defect, Forger, Head};
use super::{command_payload, mls_header, spec, CaseFuture};
use crate::client::{event_text, Event};
use crate::harness::Dir;
use crate::session::cell::{Cell, SECRET};
use crate::session::driver::{base_name, App, GRACE, STEP};
use crate::verdict::Failure;

/// The role of the implementation under test.
const MODERATOR: &str = "moderator";

/// The ciphersuite of SLIM MLS groups (SLIM-MLS-001): 0x0002.
const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;

/// How long one poll of the runner's link waits before it looks at the Invite call again.
const POLL: Duration = Duration::from_millis(100);

/// How long the runner keeps listening after the Invite call answered, for a late welcome.
const AFTER: Duration = Duration::from_millis(500);

/// Which key the runner's key package puts in its leaf.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf {
    /// The key the credential's token names (honest).
    Named,
    /// Another key: the token names K1, the leaf carries K2.
    Foreign,
}

/// SLIM-SESS-006, SLIM-MLS-001: the positive control: an honest key package is welcomed.
pub fn valid_key_package(cx: Cell) -> CaseFuture {
    Box::pin(run(cx, Leaf::Named, ""))
}

/// SLIM-MLS-002: a key package whose credential token names another key than its leaf's
/// signature key is refused. Then, in the same cell, an honest one is welcomed: a moderator that
/// refused the first for another reason (or ignores the runner altogether) fails here too.
pub fn foreign_key_package(cx: Cell) -> CaseFuture {
    Box::pin(async move {
        run(cx.clone(), Leaf::Foreign, "").await?;
        run(cx, Leaf::Named, "-control")
            .await
            .map_err(|f| f.context("the honest key package after the refused one (the control)"))
    })
}

/// The runner's MLS signer: ECDSA P-256 / SHA-256, DER signatures (RFC 9420 §5.1.2), with the
/// P-256 key the SLIM identity token names (its public half, the 65-byte uncompressed SEC1
/// point, is the leaf's `signature_key`).
struct KeySigner<'a>(&'a IdentityKey);

impl Signer for KeySigner<'_> {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign_der(payload))
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_SECP256R1_SHA256
    }
}

fn harness(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Harness(format!("the runner could not {what}: {e}"))
}

/// A serialized MLSMessage carrying a KeyPackage for [`CIPHERSUITE`] whose BasicCredential
/// identity is `token` and whose leaf signature key is `leaf` (which signs it). Its private
/// keys stay in `provider`, for the Welcome.
pub(super) fn key_package(
    provider: &OpenMlsRustCrypto,
    leaf: &IdentityKey,
    token: &str,
) -> Result<Vec<u8>, Failure> {
    let credential = CredentialWithKey {
        credential: BasicCredential::new(token.as_bytes().to_vec()).into(),
        signature_key: leaf.public_bytes().to_vec().into(),
    };
    let bundle = KeyPackage::builder()
        .build(CIPHERSUITE, provider, &KeySigner(leaf), credential)
        .map_err(|e| harness("build its key package", e))?;
    let bytes = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .map_err(|e| harness("serialize its key package", e))?;
    // Our own bytes must be what SLIM-MLS-001 asks for, or the case judges nothing.
    if mls_header(&bytes) != Some((5, Some(0x0002))) {
        return Err(Failure::Harness(format!(
            "the runner's key package is not an MLSMessage KeyPackage for suite 2: {:?}",
            mls_header(&bytes)
        )));
    }
    Ok(bytes)
}

/// What the runner saw and did while the moderator invited it.
#[derive(Default)]
pub(super) struct Seen {
    /// DISCOVERY_REQUESTs answered.
    discoveries: usize,
    /// JOIN_REQUESTs answered with our key package.
    joins: usize,
    /// The moderator's full name (the source of its JOIN_REQUEST).
    moderator: Option<SlimName>,
    /// GROUP_WELCOMEs received (message ids).
    pub(super) welcomes: Vec<u32>,
    /// The first welcome's MLS Welcome bytes.
    welcome_mls: Option<Vec<u8>>,
    /// GROUP_UPDATEs that reached the runner (it subscribes no group channel, so any would be
    /// misaddressed; the transcript is checked too).
    updates: usize,
    /// Why the runner could not use the welcome, if it could not.
    pub(super) welcome_problem: Option<String>,
}

/// The runner as the invitee.
pub(super) struct Invitee {
    pub(super) f: Forger,
    leaf: Leaf,
    key_package: Vec<u8>,
    token: String,
    pub(super) provider: OpenMlsRustCrypto,
    pub(super) seen: Seen,
    /// How many members the group it is welcomed to has, the runner included.
    members: usize,
    /// As a member: subscribe the group's channels (from the JOIN_REQUEST) and keep the group.
    member: bool,
    /// The group channels subscribed.
    pub(super) channels: Vec<SlimName>,
    /// The group joined from the welcome (member mode).
    pub(super) group: Option<MlsGroup>,
    /// Data messages (MSG) that reached the runner on a group channel, in order.
    pub(super) data: Vec<pb::Message>,
}

impl Invitee {
    /// The runner as an honest member of a group of `members` (the runner included): its key
    /// package's leaf key is the key its token names, it subscribes the group's channels when
    /// asked to join, and it keeps the group it joins.
    pub(super) fn member(f: Forger, members: usize) -> Result<Self, Failure> {
        let token = f.token(Defect::None)?;
        let provider = OpenMlsRustCrypto::default();
        let key_package = key_package(&provider, &f.key, &token)?;
        Ok(Self {
            f,
            leaf: Leaf::Named,
            key_package,
            token,
            provider,
            seen: Seen::default(),
            members,
            member: true,
            channels: Vec::new(),
            group: None,
            data: Vec::new(),
        })
    }

    /// Sends a signed reply of type `ty` to `to` (the request's source), with the request's
    /// session fields `head` (same session and message id) and our full name as source.
    async fn reply(&self, to: &SlimName, head: Head, ty: T, payload: Cmd) -> Result<(), Failure> {
        let msg = self.f.command_with(to, head, ty, payload, Defect::None)?;
        self.f.link.send(msg).await
    }

    /// Handles one message from the node.
    async fn on_message(&mut self, cx: &Cell, msg: &pb::Message) -> Result<(), Failure> {
        let Some(MessageType::Publish(p)) = &msg.message_type else {
            return Ok(());
        };
        let Some(h) = p.session else {
            return Ok(());
        };
        let Some(src) = p
            .header
            .as_ref()
            .and_then(|h| h.source.as_ref())
            .and_then(|n| SlimName::from_proto(n).ok())
        else {
            cx.note(format!(
                "a session message (type {}) without a readable source reached the runner",
                h.session_message_type
            ));
            return Ok(());
        };
        let head = Head {
            session_type: h.session_type,
            session_id: h.session_id,
            message_id: h.message_id,
        };
        match T::try_from(h.session_message_type) {
            Ok(T::DiscoveryRequest) => {
                self.seen.discoveries += 1;
                self.reply(
                    &src,
                    head,
                    T::DiscoveryReply,
                    Cmd::DiscoveryReply(pb::DiscoveryReplyPayload {}),
                )
                .await?;
                cx.harness.mark(format!(
                    "runner answered DISCOVERY_REQUEST {} with a DISCOVERY_REPLY",
                    h.message_id
                ));
            }
            Ok(T::JoinRequest) => {
                self.seen.joins += 1;
                if let (true, Some(Cmd::JoinRequest(jr))) = (self.member, command_payload(msg)) {
                    // Subscribed before the JOIN_REPLY goes: the node handles a link's messages
                    // in order, so the channels are in place before anything is sent on them.
                    for n in [jr.channel, jr.control].iter().flatten() {
                        let Ok(name) = SlimName::from_proto(n) else {
                            continue;
                        };
                        if !self.channels.contains(&name) {
                            let id = 10 + self.channels.len() as u64;
                            self.f
                                .link
                                .send(slim_proto::messages::subscribe(&name, id))
                                .await?;
                            self.channels.push(name);
                        }
                    }
                }
                self.seen.moderator = Some(src.clone());
                let payload = pb::JoinReplyPayload {
                    key_package: Some(self.key_package.clone().into()),
                    participant: Some(pb::Participant {
                        name: Some(self.f.name.to_proto()),
                        settings: Some(pb::ParticipantSettings {
                            sends_data: true,
                            receives_data: true,
                        }),
                        status: pb::ParticipantState::Online as i32,
                    }),
                };
                self.reply(&src, head, T::JoinReply, Cmd::JoinReply(payload))
                    .await?;
                cx.harness.mark(format!(
                    "runner answered JOIN_REQUEST {} with a JOIN_REPLY carrying a key package whose leaf key is {}",
                    h.message_id,
                    match self.leaf {
                        Leaf::Named => "the key its credential token names",
                        Leaf::Foreign => "NOT the key its credential token names",
                    }
                ));
            }
            Ok(T::GroupWelcome) => {
                let first = self.seen.welcomes.is_empty();
                self.seen.welcomes.push(h.message_id);
                if first {
                    self.seen.welcome_mls = match command_payload(msg) {
                        Some(Cmd::GroupWelcome(w)) => w.mls.map(|m| m.mls_content.to_vec()),
                        _ => None,
                    };
                }
                if self.leaf == Leaf::Named {
                    if first {
                        match self.join() {
                            Ok(g) => self.group = self.member.then_some(g),
                            Err(e) => self.seen.welcome_problem = Some(e),
                        }
                    }
                    if self.seen.welcome_problem.is_none() {
                        self.reply(
                            &src,
                            head,
                            T::GroupAck,
                            Cmd::GroupAck(pb::GroupAckPayload {}),
                        )
                        .await?;
                        cx.harness.mark(format!(
                            "runner joined from GROUP_WELCOME {} and acknowledged it",
                            h.message_id
                        ));
                    }
                }
            }
            Ok(T::GroupUpdate) => self.seen.updates += 1,
            Ok(T::Msg) => self.data.push(msg.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Joins the group from the first welcome's MLS Welcome with our key package's private
    /// keys, and checks that its members are us and a moderator whose credential token verifies
    /// and names its leaf key (SLIM-MLS-001). The reason if not.
    fn join(&self) -> Result<MlsGroup, String> {
        let bytes = self
            .seen
            .welcome_mls
            .as_deref()
            .ok_or("the GROUP_WELCOME has no MLS payload")?;
        let mut rest = bytes;
        let welcome = match MlsMessageIn::tls_deserialize(&mut rest)
            .map_err(|e| format!("its MLS payload is not an MLSMessage: {e}"))?
            .extract()
        {
            MlsMessageBodyIn::Welcome(w) => w,
            _ => return Err("its MLS payload is an MLSMessage but not a Welcome".into()),
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let staged = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
            .map_err(|e| format!("the runner (openmls) cannot join from its Welcome: {e}"))?;
        let members: Vec<_> = staged.members().collect();
        let ours = members
            .iter()
            .filter(|m| m.credential.serialized_content() == self.token.as_bytes())
            .count();
        if members.len() != self.members || ours != 1 {
            return Err(format!(
                "the group it welcomes to has {} members, {ours} of them the runner",
                members.len()
            ));
        }
        let verifier = SharedSecret::new(SECRET).map_err(|e| e.to_string())?;
        for m in members
            .iter()
            .filter(|m| m.credential.serialized_content() != self.token.as_bytes())
        {
            let token = std::str::from_utf8(m.credential.serialized_content())
                .map_err(|_| "the moderator's MLS credential is not a UTF-8 token".to_string())?;
            let claims = verifier
                .verify(token, super::identity::now())
                .map_err(|e| format!("a member's MLS credential token: {e}"))?;
            if claims.pubkey != m.signature_key {
                return Err(
                    "a member's MLS credential token names another key than its leaf's".into(),
                );
            }
        }
        staged
            .into_group(&self.provider)
            .map_err(|e| format!("the runner (openmls) cannot use the group it joined: {e}"))
    }
}

/// One invite of the runner by a fresh moderator on a fresh channel; `tag` keeps the names of
/// two runs in one cell apart.
async fn run(cx: Cell, leaf: Leaf, tag: &str) -> Result<(), Failure> {
    let m = cx.app(MODERATOR, &format!("m{tag}")).await?;
    let f = Forger::named(&cx, &format!("runner{tag}")).await?;
    let channel = cx.name(&format!("channel{tag}"));
    cx.harness
        .mark(format!("{} creates group {channel}", m.name));
    let sm = m
        .create_session(&channel, spec(true, true, true), STEP)
        .await
        .map_err(|f| f.context("creating the group"))?;
    let token = f.token(Defect::None)?;
    let provider = OpenMlsRustCrypto::default();
    let leaf_key = match leaf {
        Leaf::Named => f.key.clone(),
        Leaf::Foreign => IdentityKey::generate(&mut OsRng),
    };
    let key_package = key_package(&provider, &leaf_key, &token)?;
    let invitee = base_name(&f.name.to_string());
    m.set_route(&invitee).await?;
    cx.harness
        .mark(format!("{} invites the runner {invitee}", m.name));
    let call = {
        let (m, sm, who) = (m.clone(), sm.clone(), invitee.clone());
        tokio::spawn(async move { m.invite(&sm, &who, STEP).await })
    };
    let mut r = Invitee {
        f,
        leaf,
        key_package,
        token,
        provider,
        seen: Seen::default(),
        members: 2,
        member: false,
        channels: Vec::new(),
        group: None,
        data: Vec::new(),
    };
    // Play the invitee until the Invite call answers (it is bounded by STEP plus GRACE).
    let deadline = tokio::time::Instant::now() + STEP + GRACE + Duration::from_secs(1);
    while !call.is_finished() && tokio::time::Instant::now() < deadline {
        listen(&cx, &mut r, POLL).await?;
        if leaf == Leaf::Foreign && !r.seen.welcomes.is_empty() {
            call.abort();
            return Err(welcomed(&m, &r.seen));
        }
    }
    let answer = if call.is_finished() {
        match call.await {
            Ok(a) => a,
            Err(e) => return Err(Failure::Harness(format!("the Invite task: {e}"))),
        }
    } else {
        call.abort();
        return Err(Failure::Harness(format!(
            "driver {}: the Invite call did not answer within {:?}",
            m.driver.name,
            STEP + GRACE
        )));
    };
    // A welcome sent after a failed Invite would still let the runner in.
    let until = tokio::time::Instant::now() + AFTER;
    while tokio::time::Instant::now() < until {
        listen(&cx, &mut r, POLL).await?;
    }
    if r.seen.joins == 0 {
        return Err(Failure::violation_of(
            "SLIM-SESS-006",
            format!(
                "{} invites the runner: DISCOVERY_REQUEST, then after its DISCOVERY_REPLY a JOIN_REQUEST",
                m.name
            ),
            format!(
                "the runner answered {} DISCOVERY_REQUEST(s) and got no JOIN_REQUEST; the Invite call {}",
                r.seen.discoveries,
                outcome(&answer)
            ),
        ));
    }
    match leaf {
        Leaf::Named => judge_valid(&cx, &m, &r.seen, answer),
        Leaf::Foreign => judge_foreign(&cx, &m, &r.seen, answer),
    }
}

/// Reads the runner's link for up to `within` and handles what arrives.
pub(super) async fn listen(cx: &Cell, r: &mut Invitee, within: Duration) -> Result<(), Failure> {
    match r.f.link.recv(within).await {
        Event::Message(msg) => r.on_message(cx, &msg).await,
        Event::Silent => Ok(()),
        other => Err(Failure::Harness(format!(
            "the runner's link: {}",
            event_text(&other)
        ))),
    }
}

fn outcome(answer: &Result<(), Failure>) -> String {
    match answer {
        Ok(()) => "succeeded".into(),
        Err(f) => format!("failed: {}", f.texts().1),
    }
}

fn welcomed(m: &App, seen: &Seen) -> Failure {
    Failure::violation(
        format!(
            "{} refuses a key package whose credential token names another key than its leaf signature key: no GROUP_WELCOME",
            m.name
        ),
        format!(
            "it sent the runner GROUP_WELCOME {:?}: the member was accepted",
            seen.welcomes
        ),
    )
}

fn judge_valid(
    cx: &Cell,
    m: &App,
    seen: &Seen,
    answer: Result<(), Failure>,
) -> Result<(), Failure> {
    if seen.welcomes.is_empty() {
        return Err(Failure::violation(
            format!(
                "{} answers the runner's JOIN_REPLY (a key package whose credential token names its leaf key) with a GROUP_WELCOME",
                m.name
            ),
            format!("no GROUP_WELCOME; the Invite call {}", outcome(&answer)),
        ));
    }
    if let Some(problem) = &seen.welcome_problem {
        return Err(Failure::violation_of(
            "SLIM-MLS-001",
            "the GROUP_WELCOME carries an MLS Welcome the invitee joins from, to a group of the moderator and the invitee, each with a credential token that names its leaf key",
            problem.clone(),
        ));
    }
    answer.map_err(|f| f.context("the Invite of the runner after it acknowledged the welcome"))?;
    cx.note(format!(
        "the runner joined from the Welcome and acknowledged GROUP_WELCOME {:?}",
        seen.welcomes
    ));
    Ok(())
}

fn judge_foreign(
    cx: &Cell,
    m: &App,
    seen: &Seen,
    answer: Result<(), Failure>,
) -> Result<(), Failure> {
    if !seen.welcomes.is_empty() {
        return Err(welcomed(m, seen));
    }
    let me = m.name.to_string();
    let updates = cx
        .session_frames(Some(Dir::ToNode), &[T::GroupUpdate])
        .into_iter()
        .filter(|e| e.source.as_deref() == Some(me.as_str()))
        .count();
    if updates > 0 || seen.updates > 0 {
        return Err(Failure::violation(
            format!("{} refuses the member: no GROUP_UPDATE adding it", m.name),
            format!("it sent {} GROUP_UPDATE(s)", updates.max(seen.updates)),
        ));
    }
    match answer {
        Ok(()) => Err(Failure::violation(
            format!(
                "{}'s Invite of a member whose credential token names another key than its leaf signature key fails",
                m.name
            ),
            "the Invite call succeeded".to_string(),
        )),
        Err(Failure::Violation { observed, .. }) => {
            cx.note(format!("the Invite call failed as it must: {observed}"));
            // What the moderator's app was told (SLIM-MLS-002 asks that it says which check
            // failed; the wording is the implementation's, so it is recorded, not judged).
            for r in m.events.snapshot() {
                if let slim_proto::driver::event::Kind::Note(n) = r.event {
                    cx.note(format!("{} was told: {n}", m.name));
                }
            }
            Ok(())
        }
        Err(other) => Err(other),
    }
}
