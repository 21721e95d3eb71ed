//! `slim-bench revocation-epoch`: how long an MLS group takes from a revocation to the next
//! epoch at every remaining member, through the session-profile driver protocol
//! (`proto/conformance/v1/driver.proto`, `spec/DRIVER.md`).
//!
//! A moderator and `members - 1` participants, all apps of one driver, all on one node, form a
//! reliable MLS group. Each round revokes the oldest participant: `RevokeIdentity` on the
//! moderator's app with that participant's subject (`CreateAppResponse.subject`), which makes the
//! moderator remove it with an MLS commit. The round's latency runs from the call to the moment
//! the last remaining member (the moderator included) is in the next epoch without it:
//!
//! - `--signal event` (default): each remaining member's `MemberLeft` for the revoked member on
//!   its Events stream, timestamped when the stream delivers it, then checked with `StateAuth`
//!   (epoch past the one before the call, the revoked member gone). A check that does not hold yet
//!   is polled until it does, and that later instant counts.
//! - `--signal poll`: `StateAuth` of every remaining member polled every `--poll-ms` until it
//!   holds, for drivers that report no `MemberLeft`.
//!
//! A replacement participant (a new app, a new identity) is then invited and every member's epoch
//! must agree before the next round, so every revocation happens in a group of `members`.
//! Without `--driver`, the reference client's driver server runs in this process; without
//! `--target`, the reference relay does too.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use slim_proto::driver::driver_client::DriverClient;
use slim_proto::driver::{self as d, event::Kind, revoke_request::Target};
use slim_reference::client::driver::DriverServer;
use slim_reference::server::RelayHandle;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Code;

use crate::error::BenchError;
use crate::revocation::Percentiles;

/// The shared secret the benchmark's apps are created with (loopback only).
const SECRET: &str = "slim-bench-revocation-epoch-shared-secret-0123";
/// Polling interval while waiting for the group to settle between rounds.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// How the end of a round is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// `MemberLeft` on each remaining member's Events stream, confirmed with `StateAuth`.
    Event,
    /// `StateAuth` of each remaining member, polled.
    Poll,
}

/// What the moderator's app is asked to do to the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `RevokeIdentity{subject}`: the benchmark's purpose.
    Revoke,
    /// `Remove{name}`: a plain removal, the baseline a revocation adds to.
    Remove,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct EpochConfig {
    /// The node (`None`: the reference relay in this process).
    pub target: Option<String>,
    /// The driver (`None`: the reference client's driver server in this process).
    pub driver: Option<String>,
    /// Group size, moderator included (at least 3: one revoked, two that must agree).
    pub members: usize,
    /// Revocations, one per round.
    pub rounds: usize,
    /// How the end of a round is observed.
    pub signal: Signal,
    /// Revocation, or a plain removal as the baseline.
    pub via: Via,
    /// `StateAuth` polling interval.
    pub poll: Duration,
    /// Bound for each driver call and each round.
    pub timeout: Duration,
}

/// One round as measured.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRound {
    /// From the `RevokeIdentity` call to the last remaining member in the next epoch, ms.
    pub ms: f64,
    /// How long `RevokeIdentity` itself took to return, ms.
    pub call_ms: f64,
    /// When the moderator was done (its `MemberLeft`, or its `StateAuth` in poll mode), ms.
    pub moderator_ms: f64,
    /// When the first remaining participant (not the moderator) was done, ms.
    pub first_member_ms: f64,
    /// The moderator's epoch before the call.
    pub epoch_before: u64,
    /// The highest epoch a remaining member reported when it was done (`epoch_before + 1` for a
    /// single commit).
    pub epoch_after: u64,
}

/// What was measured (`slim-bench/revocation-epoch/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct EpochResult {
    /// Schema tag.
    pub schema: &'static str,
    /// `"embedded"` or the node's URL.
    pub target: String,
    /// `"embedded"` or the driver's URL.
    pub driver: String,
    /// The driver's `Capabilities.implementation`.
    pub implementation: String,
    /// Group size at every revocation, moderator included.
    pub members: usize,
    /// Rounds made.
    pub rounds: usize,
    /// How the end of a round was observed.
    pub signal: Signal,
    /// `"revoke"` (`RevokeIdentity`) or `"remove"` (`Remove`, the baseline).
    pub via: Via,
    /// How the group size is kept: a new participant is invited after each revocation.
    pub live_policy: &'static str,
    /// Revocation to every remaining member in the next epoch, over the rounds, ms.
    pub latency_ms: Option<Percentiles>,
    /// `RevokeIdentity` call to its return, over the rounds, ms.
    pub call_ms: Option<Percentiles>,
    /// Every round in order.
    pub samples: Vec<EpochRound>,
    /// Rounds in which some member ended more than one epoch ahead (0 for a single commit).
    pub epoch_jumps: usize,
    /// Wall time of the whole run, seconds (group setup included).
    pub wall_s: f64,
    /// Where it ran.
    pub machine: crate::procstat::Machine,
}

/// One app of the group and its view of the group session.
#[derive(Debug, Clone)]
struct Member {
    app: String,
    full_name: String,
    subject: String,
    session: String,
}

/// An event of one app, stamped when its stream delivered it.
struct Seen {
    app: String,
    at: Instant,
    kind: Kind,
}

struct Bench {
    c: DriverClient<Channel>,
    node: String,
    run: String,
    timeout_ms: u32,
    events: mpsc::UnboundedSender<Seen>,
}

fn rpc(what: &str) -> impl FnOnce(tonic::Status) -> BenchError + '_ {
    move |s| BenchError::Protocol(format!("{what}: {:?} {}", s.code(), s.message()))
}

impl Bench {
    /// Creates app `name` and starts forwarding its events.
    async fn app(&mut self, name: &str) -> Result<(String, String, String), BenchError> {
        let r = self
            .c
            .create_app(d::CreateAppRequest {
                name: name.into(),
                node_url: self.node.clone(),
                identity: Some(d::create_app_request::Identity::SharedSecret(SECRET.into())),
                seed: Vec::new().into(),
                timeout_ms: self.timeout_ms,
            })
            .await
            .map_err(rpc(&format!("CreateApp {name}")))?
            .into_inner();
        let subject = subject_of(&r);
        if subject.is_empty() {
            return Err(BenchError::Protocol(format!(
                "CreateApp {name}: the driver returned no subject (CreateAppResponse.subject), so there is nothing to revoke"
            )));
        }
        let mut stream = self
            .c
            .events(d::AppRef {
                app_id: r.app_id.clone(),
            })
            .await
            .map_err(rpc(&format!("Events {name}")))?
            .into_inner();
        let (tx, app) = (self.events.clone(), r.app_id.clone());
        tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                if let Some(kind) = e.kind {
                    let at = Instant::now();
                    if tx
                        .send(Seen {
                            app: app.clone(),
                            at,
                            kind,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        Ok((r.app_id, r.full_name, subject))
    }

    /// Creates participant `index`, invites it and waits for its side of the session.
    async fn participant(
        &mut self,
        moderator: &Member,
        index: usize,
    ) -> Result<Member, BenchError> {
        let name = format!("bench/{}/m{index}", self.run);
        let (app, full_name, subject) = self.app(&name).await?;
        self.c
            .invite(d::MemberRequest {
                app_id: moderator.app.clone(),
                session_id: moderator.session.clone(),
                name: name.clone(),
                timeout_ms: self.timeout_ms,
            })
            .await
            .map_err(rpc(&format!("Invite {name}")))?;
        let s = self
            .c
            .await_session(d::AwaitSessionRequest {
                app_id: app.clone(),
                timeout_ms: self.timeout_ms,
            })
            .await
            .map_err(rpc(&format!("AwaitSession {name}")))?
            .into_inner();
        Ok(Member {
            app,
            full_name,
            subject,
            session: s.session_id,
        })
    }

    async fn state(&mut self, m: &Member) -> Result<d::StateAuthResponse, BenchError> {
        Ok(self
            .c
            .state_auth(d::SessionRef {
                app_id: m.app.clone(),
                session_id: m.session.clone(),
                timeout_ms: self.timeout_ms,
            })
            .await
            .map_err(rpc(&format!("StateAuth {}", m.full_name)))?
            .into_inner())
    }

    /// Waits until every member reports the same epoch and the same member list, of `size`.
    async fn settle(
        &mut self,
        group: &[Member],
        size: usize,
        bound: Duration,
    ) -> Result<u64, BenchError> {
        let deadline = Instant::now() + bound;
        loop {
            let mut views = Vec::with_capacity(group.len());
            for m in group {
                views.push(self.state(m).await?);
            }
            let agreed = views.iter().all(|v| {
                v.epoch == views[0].epoch
                    && v.members == views[0].members
                    && v.epoch_authenticator == views[0].epoch_authenticator
            });
            if agreed && views[0].members.len() == size {
                return Ok(views[0].epoch);
            }
            if Instant::now() > deadline {
                let epochs: Vec<u64> = views.iter().map(|v| v.epoch).collect();
                return Err(BenchError::Protocol(format!(
                    "the group did not settle within {bound:?}: epochs {epochs:?}, {} members seen by the moderator, {size} expected",
                    views[0].members.len()
                )));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }
}

/// The identity subject of an app, as the driver reports it.
fn subject_of(r: &d::CreateAppResponse) -> String {
    r.subject.clone()
}

/// Whether `s` shows the member past `epoch` with `gone` no longer in the group.
fn moved_on(s: &d::StateAuthResponse, epoch: u64, gone: &str) -> bool {
    s.epoch > epoch && !s.members.iter().any(|m| m == gone)
}

/// Runs the benchmark.
pub async fn run_epoch(cfg: &EpochConfig) -> Result<EpochResult, BenchError> {
    if cfg.members < 3 {
        return Err(BenchError::Usage(
            "--members must be at least 3 (the moderator, the revoked member, one that stays)"
                .into(),
        ));
    }
    let started = Instant::now();
    let relay: Option<RelayHandle> = match &cfg.target {
        Some(_) => None,
        None => Some(
            slim_reference::server::spawn(slim_reference::config::ServerConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..Default::default()
            })
            .await
            .map_err(|e| BenchError::Usage(format!("embedded relay: {e}")))?,
        ),
    };
    let server = match &cfg.driver {
        Some(_) => None,
        None => Some(
            DriverServer::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| BenchError::Usage(format!("embedded driver: {e}")))?,
        ),
    };
    let node = match (&cfg.target, &relay) {
        (Some(t), _) => t.clone(),
        (None, Some(r)) => r.url(),
        (None, None) => unreachable!("a relay is embedded when there is no target"),
    };
    let driver_url = match (&cfg.driver, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => format!("http://{}", s.local_addr()),
        (None, None) => unreachable!("a driver is embedded when there is none given"),
    };
    let result = measure(cfg, node, &driver_url, started).await;
    if let Some(s) = server {
        s.shutdown().await;
    }
    if let Some(r) = relay {
        let _ = r.shutdown().await;
    }
    result
}

async fn measure(
    cfg: &EpochConfig,
    node: String,
    driver_url: &str,
    started: Instant,
) -> Result<EpochResult, BenchError> {
    let c = DriverClient::connect(driver_url.to_string())
        .await
        .map_err(|e| BenchError::Connect {
            url: driver_url.to_string(),
            reason: e.to_string(),
        })?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let timeout_ms = u32::try_from(cfg.timeout.as_millis()).unwrap_or(u32::MAX);
    let mut b = Bench {
        c,
        node: node.clone(),
        run: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        timeout_ms,
        events: events_tx,
    };
    let caps =
        b.c.get_capabilities(d::GetCapabilitiesRequest {})
            .await
            .map_err(rpc("GetCapabilities"))?
            .into_inner();
    let missing: Vec<&str> = [
        ("group", caps.group),
        ("mls", caps.mls),
        ("reliable", caps.reliable),
        ("state_auth", caps.state_auth),
        ("shared_secret_identity", caps.shared_secret_identity),
    ]
    .into_iter()
    .filter_map(|(n, ok)| (!ok).then_some(n))
    .collect();
    if !missing.is_empty() {
        return Err(BenchError::Protocol(format!(
            "the driver ({}) lacks capabilities {missing:?}",
            caps.implementation
        )));
    }

    // The group: moderator + participants, reliable and MLS.
    let mod_name = format!("bench/{}/mod", b.run);
    let (app, full_name, subject) = b.app(&mod_name).await?;
    let g =
        b.c.create_session(d::CreateSessionRequest {
            app_id: app.clone(),
            r#type: d::SessionType::Group as i32,
            peer: format!("bench/{}/chan", b.run),
            reliability: Some(d::Reliability::default()),
            mls: true,
            timeout_ms,
        })
        .await
        .map_err(rpc("CreateSession (group)"))?
        .into_inner();
    let moderator = Member {
        app,
        full_name,
        subject,
        session: g.session_id,
    };
    let mut participants: VecDeque<Member> = VecDeque::new();
    let mut next = 1;
    for _ in 1..cfg.members {
        participants.push_back(b.participant(&moderator, next).await?);
        next += 1;
    }
    let everyone = |ps: &VecDeque<Member>| {
        std::iter::once(moderator.clone())
            .chain(ps.iter().cloned())
            .collect::<Vec<_>>()
    };
    b.settle(&everyone(&participants), cfg.members, cfg.timeout)
        .await?;

    let mut samples = Vec::with_capacity(cfg.rounds);
    for round in 0..cfg.rounds {
        let Some(victim) = participants.pop_front() else {
            return Err(BenchError::Protocol("no participant left to revoke".into()));
        };
        let remaining = everyone(&participants);
        let epoch_before = b.state(&moderator).await?.epoch;
        while events.try_recv().is_ok() {}
        let t0 = Instant::now();
        let deadline = t0 + cfg.timeout;
        // Poll mode: the polls run from the call on, so a call that returns late hides nothing.
        let mut polls = tokio::task::JoinSet::new();
        if cfg.signal == Signal::Poll {
            for m in remaining.iter().cloned() {
                let mut c = b.c.clone();
                let (gone, poll) = (victim.full_name.clone(), cfg.poll);
                polls.spawn(async move {
                    loop {
                        let s = c
                            .state_auth(d::SessionRef {
                                app_id: m.app.clone(),
                                session_id: m.session.clone(),
                                timeout_ms,
                            })
                            .await
                            .map_err(rpc(&format!("StateAuth {}", m.full_name)))?
                            .into_inner();
                        if moved_on(&s, epoch_before, &gone) {
                            return Ok::<_, BenchError>((m.app, Instant::now(), s.epoch));
                        }
                        if Instant::now() > deadline {
                            return Err(BenchError::Protocol(format!(
                                "{} still at epoch {} (before: {epoch_before})",
                                m.full_name, s.epoch
                            )));
                        }
                        tokio::time::sleep(poll).await;
                    }
                });
            }
        }
        let called = match cfg.via {
            Via::Revoke => {
                b.c.revoke_identity(d::RevokeRequest {
                    app_id: moderator.app.clone(),
                    target: Some(Target::Subject(victim.subject.clone())),
                })
                .await
                .map(|_| ())
            }
            Via::Remove => {
                b.c.remove(d::MemberRequest {
                    app_id: moderator.app.clone(),
                    session_id: moderator.session.clone(),
                    name: victim.full_name.clone(),
                    timeout_ms,
                })
                .await
                .map(|_| ())
            }
        };
        called.map_err(|s| {
            if s.code() == Code::Unimplemented {
                BenchError::Protocol(format!(
                    "the driver ({}) does not implement {:?}: {}",
                    caps.implementation,
                    cfg.via,
                    s.message()
                ))
            } else {
                rpc(&format!("{:?}", cfg.via))(s)
            }
        })?;
        let call = t0.elapsed();
        let mut done: HashMap<String, (Instant, u64)> = HashMap::new();
        match cfg.signal {
            Signal::Event => {
                while done.len() < remaining.len() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let seen = match tokio::time::timeout(left, events.recv()).await {
                        Ok(Some(s)) => s,
                        Ok(None) | Err(_) => {
                            let waiting: Vec<&str> = remaining
                                .iter()
                                .filter(|m| !done.contains_key(&m.app))
                                .map(|m| m.full_name.as_str())
                                .collect();
                            return Err(BenchError::Protocol(format!(
                                "round {}: no MemberLeft for {} within {:?} at {waiting:?} (try --signal poll)",
                                round + 1,
                                victim.full_name,
                                cfg.timeout
                            )));
                        }
                    };
                    let Kind::MemberLeft(left) = &seen.kind else {
                        continue;
                    };
                    let Some(m) = remaining
                        .iter()
                        .find(|m| m.app == seen.app && m.session == left.session_id)
                    else {
                        continue;
                    };
                    if left.member != victim.full_name || done.contains_key(&m.app) {
                        continue;
                    }
                    let mut at = seen.at;
                    let mut s = b.state(m).await?;
                    while !moved_on(&s, epoch_before, &victim.full_name) {
                        if Instant::now() > deadline {
                            return Err(BenchError::Protocol(format!(
                                "round {}: {} reported MemberLeft but StateAuth still shows epoch {} with {} members",
                                round + 1,
                                m.full_name,
                                s.epoch,
                                s.members.len()
                            )));
                        }
                        tokio::time::sleep(cfg.poll).await;
                        s = b.state(m).await?;
                        at = Instant::now();
                    }
                    done.insert(m.app.clone(), (at, s.epoch));
                }
            }
            Signal::Poll => {
                while let Some(r) = polls.join_next().await {
                    let (app, at, epoch) =
                        r.map_err(|e| BenchError::Protocol(format!("poll task: {e}")))??;
                    done.insert(app, (at, epoch));
                }
            }
        }
        let last = done.values().map(|(at, _)| *at).max().unwrap_or(t0);
        let epoch_after = done.values().map(|(_, e)| *e).max().unwrap_or(epoch_before);
        let moderator_at = done.get(&moderator.app).map_or(last, |(at, _)| *at);
        let first_member = done
            .iter()
            .filter(|(app, _)| **app != moderator.app)
            .map(|(_, (at, _))| *at)
            .min()
            .unwrap_or(last);
        samples.push(EpochRound {
            ms: (last - t0).as_secs_f64() * 1e3,
            call_ms: call.as_secs_f64() * 1e3,
            moderator_ms: (moderator_at - t0).as_secs_f64() * 1e3,
            first_member_ms: (first_member - t0).as_secs_f64() * 1e3,
            epoch_before,
            epoch_after,
        });
        // Back to `members`: a new participant with a new identity; then everyone agrees.
        let _ =
            b.c.free(d::AppRef {
                app_id: victim.app.clone(),
            })
            .await;
        participants.push_back(b.participant(&moderator, next).await?);
        next += 1;
        b.settle(&everyone(&participants), cfg.members, cfg.timeout)
            .await?;
    }
    let _ =
        b.c.close_session(d::SessionRef {
            app_id: moderator.app.clone(),
            session_id: moderator.session.clone(),
            timeout_ms,
        })
        .await;
    for m in everyone(&participants) {
        let _ = b.c.free(d::AppRef { app_id: m.app }).await;
    }
    let ms = |f: fn(&EpochRound) -> f64| {
        Percentiles::of(
            &samples
                .iter()
                .map(|r| Duration::from_secs_f64(f(r) / 1e3))
                .collect::<Vec<_>>(),
        )
    };
    Ok(EpochResult {
        schema: "slim-bench/revocation-epoch/v1",
        target: cfg.target.clone().unwrap_or_else(|| "embedded".into()),
        driver: cfg.driver.clone().unwrap_or_else(|| "embedded".into()),
        implementation: caps.implementation,
        members: cfg.members,
        rounds: samples.len(),
        signal: cfg.signal,
        via: cfg.via,
        live_policy: "replace: a new participant is invited after each revocation",
        latency_ms: ms(|r| r.ms),
        call_ms: ms(|r| r.call_ms),
        epoch_jumps: samples
            .iter()
            .filter(|r| r.epoch_after > r.epoch_before + 1)
            .count(),
        samples,
        wall_s: started.elapsed().as_secs_f64(),
        machine: crate::procstat::Machine::detect(),
    })
}

/// Prints the result as a few lines.
pub fn print(out: &mut dyn std::io::Write, r: &EpochResult) -> std::io::Result<()> {
    writeln!(
        out,
        "slim-bench revocation-epoch: driver {} ({}), node {}, group of {} (moderator included), reliable + MLS, {} rounds, signal {:?}",
        r.driver, r.implementation, r.target, r.members, r.rounds, r.signal
    )?;
    let call = match r.via {
        Via::Revoke => "RevokeIdentity",
        Via::Remove => "Remove (baseline, not a revocation)",
    };
    if let Some(p) = &r.latency_ms {
        writeln!(
            out,
            "{call} to every remaining member in the next epoch, ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (min {:.1}, mean {:.1}, n {})",
            p.p50, p.p90, p.p99, p.max, p.min, p.mean, p.count
        )?;
    }
    if let Some(p) = &r.call_ms {
        writeln!(
            out,
            "{call} call alone, ms: p50 {:.1}  p99 {:.1}  max {:.1}",
            p.p50, p.p99, p.max
        )?;
    }
    writeln!(
        out,
        "rounds with more than one epoch step: {}; wall {:.1} s",
        r.epoch_jumps, r.wall_s
    )
}
