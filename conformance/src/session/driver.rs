//! The runner's side of the driver protocol (`proto/conformance/v1/driver.proto`,
//! `spec/DRIVER.md`): one [`Driver`] per implementation under test, one [`App`] per actor.
//!
//! Every call is bounded twice: the shim is asked to answer within `timeout_ms`, and the runner
//! stops waiting a grace period after that. What the answer means for the case:
//!
//! | answer | meaning | verdict |
//! |---|---|---|
//! | OK | the step happened | the case goes on |
//! | `UNIMPLEMENTED` | the implementation cannot do the step | UNSUPPORTED |
//! | `DEADLINE_EXCEEDED`, `FAILED_PRECONDITION`, other statuses | the implementation tried and failed | the case's requirement is broken |
//! | transport error, `UNAVAILABLE`, no answer within the grace period | the shim crashed or hangs | ERROR, with the cause |
//! | an answer that contradicts the protocol (a missing id, wrong counts) | the shim is broken | ERROR, with the cause |

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slim_proto::driver::{self as d, driver_client::DriverClient};
use slim_proto::names::SlimName;
use tokio::sync::Notify;
use tonic::transport::Channel;

use crate::verdict::Failure;

/// How long the runner waits beyond a call's own `timeout_ms` before it declares the shim hung.
pub const GRACE: Duration = Duration::from_secs(5);

/// The default bound of one driver step (creating an app, establishing a session, an invite).
pub const STEP: Duration = Duration::from_secs(15);

/// One implementation under test, reached through its shim.
#[derive(Clone)]
pub struct Driver {
    /// The name given with `--driver NAME=URL` (`ref` for the embedded reference).
    pub name: String,
    /// The shim's URL.
    pub url: String,
    client: DriverClient<Channel>,
    /// What the shim said it can do.
    pub caps: d::Capabilities,
}

/// A driver could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The URL is not a gRPC endpoint URL.
    #[error("driver {name}: bad URL {url:?}: {reason} (expected http://HOST:PORT)")]
    BadUrl {
        /// The driver's name.
        name: String,
        /// What was given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Nothing answers there.
    #[error("driver {name} at {url} does not answer GetCapabilities: {reason}; start the shim first (see spec/DRIVER.md)")]
    Unreachable {
        /// The driver's name.
        name: String,
        /// Its URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl Driver {
    /// Connects to the shim at `url` and asks for its capabilities (bounded by `timeout`).
    pub async fn connect(name: &str, url: &str, timeout: Duration) -> Result<Driver, DriverError> {
        let endpoint = Channel::from_shared(url.to_string()).map_err(|e| DriverError::BadUrl {
            name: name.into(),
            url: url.into(),
            reason: e.to_string(),
        })?;
        let unreachable = |reason: String| DriverError::Unreachable {
            name: name.into(),
            url: url.into(),
            reason,
        };
        let channel = tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut client = DriverClient::new(channel).max_decoding_message_size(64 << 20);
        let caps = tokio::time::timeout(
            timeout,
            client.get_capabilities(d::GetCapabilitiesRequest {}),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
        .map_err(|s| unreachable(format!("{}: {}", s.code(), s.message())))?
        .into_inner();
        Ok(Driver {
            name: name.into(),
            url: url.into(),
            client,
            caps,
        })
    }

    /// A client handle for one call (tonic clients are cheap to clone).
    fn client(&self) -> DriverClient<Channel> {
        self.client.clone()
    }

    /// Runs one call bounded by `timeout` plus [`GRACE`] and maps its answer (module table).
    async fn call<T>(
        &self,
        what: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(timeout + GRACE, fut).await {
            Err(_) => Err(Failure::Harness(format!(
                "driver {}: {what} hung: no answer within {:?} (timeout_ms {} + grace {:?})",
                self.name,
                timeout + GRACE,
                timeout.as_millis(),
                GRACE
            ))),
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(self.status_failure(what, &s)),
        }
    }

    fn status_failure(&self, what: &str, s: &tonic::Status) -> Failure {
        use tonic::Code;
        let msg = s.message();
        match s.code() {
            Code::Unimplemented => Failure::Unsupported(format!(
                "{} does not implement {what}: {msg}",
                self.name
            )),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                if is_transport(s) =>
            {
                Failure::Harness(format!(
                    "driver {} crashed or is unreachable during {what}: {}: {msg}",
                    self.name,
                    s.code()
                ))
            }
            Code::NotFound | Code::InvalidArgument => Failure::Harness(format!(
                "driver {} refused {what} as malformed or unknown ({}: {msg}); the runner passed ids the shim gave it",
                self.name,
                s.code()
            )),
            code => Failure::violation(
                format!("{} completes {what}", self.name),
                format!("{} answered {code:?}: {msg}", self.name),
            ),
        }
    }

    /// Creates an app named `name` (`org/ns/app`) on `node_url` with `identity`, and starts
    /// collecting its events.
    pub async fn create_app(
        &self,
        name: &str,
        node_url: &str,
        identity: d::create_app_request::Identity,
        seed: [u8; 32],
    ) -> Result<App, Failure> {
        let req = d::CreateAppRequest {
            name: name.into(),
            node_url: node_url.into(),
            identity: Some(identity),
            seed: seed.to_vec().into(),
            timeout_ms: ms(STEP),
        };
        let mut c = self.client();
        let r = self
            .call("CreateApp", STEP, c.create_app(req))
            .await
            .map_err(|f| f.context(&format!("creating app {name}")))?;
        if r.app_id.is_empty() {
            return Err(Failure::Harness(format!(
                "driver {}: CreateApp returned no app_id",
                self.name
            )));
        }
        let full = r.full_name.parse::<SlimName>().map_err(|e| {
            Failure::Harness(format!(
                "driver {}: CreateApp returned full_name {:?}: {e}",
                self.name, r.full_name
            ))
        })?;
        let events = EventLog::default();
        // The call is set up inside the pump: a server may send its response headers only with
        // the first event (grpc-python does), so waiting for them here could wait for ever.
        let c = self.client();
        let req = d::AppRef {
            app_id: r.app_id.clone(),
        };
        let pump = tokio::spawn(events.clone().pump(c, req));
        Ok(App {
            driver: self.clone(),
            id: r.app_id,
            name: full,
            subject: r.subject,
            events,
            _pump: Arc::new(PumpGuard(pump)),
        })
    }
}

fn is_transport(s: &tonic::Status) -> bool {
    // tonic reports connection failures as Unavailable/Unknown with a transport source; a
    // status the shim sent on purpose has none.
    s.code() == tonic::Code::Unavailable || std::error::Error::source(s).is_some()
}

/// Milliseconds of `d`, saturated to u32.
pub fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Aborts the event pump when the last [`App`] handle goes.
struct PumpGuard(tokio::task::JoinHandle<()>);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One event as the runner recorded it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When it arrived at the runner.
    pub at: Instant,
    /// The event.
    pub event: d::event::Kind,
}

/// Everything an app was told, in order, with a way to wait for the next one.
#[derive(Clone, Default)]
pub struct EventLog {
    inner: Arc<Mutex<LogInner>>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct LogInner {
    events: Vec<Recorded>,
    /// Set when the stream ended: why.
    ended: Option<String>,
}

impl EventLog {
    async fn pump(self, mut client: DriverClient<Channel>, req: d::AppRef) {
        let mut stream = match client.events(req).await {
            Ok(s) => s.into_inner(),
            Err(s) => {
                if let Ok(mut inner) = self.inner.lock() {
                    inner.ended = Some(format!(
                        "the event stream was refused: {}: {}",
                        s.code(),
                        s.message()
                    ));
                }
                self.changed.notify_waiters();
                return;
            }
        };
        loop {
            let next = stream.message().await;
            let mut inner = match self.inner.lock() {
                Ok(i) => i,
                Err(_) => return,
            };
            match next {
                Ok(Some(d::Event { kind: Some(kind) })) => inner.events.push(Recorded {
                    at: Instant::now(),
                    event: kind,
                }),
                Ok(Some(d::Event { kind: None })) => inner.events.push(Recorded {
                    at: Instant::now(),
                    event: d::event::Kind::Note("(an event with no kind)".into()),
                }),
                Ok(None) => {
                    inner.ended = Some("the event stream ended".into());
                }
                Err(s) => {
                    inner.ended = Some(format!(
                        "the event stream failed: {}: {}",
                        s.code(),
                        s.message()
                    ));
                }
            }
            let done = inner.ended.is_some();
            drop(inner);
            self.changed.notify_waiters();
            if done {
                return;
            }
        }
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Recorded> {
        self.inner
            .lock()
            .map(|i| i.events.clone())
            .unwrap_or_default()
    }

    /// Why the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|i| i.ended.clone())
    }

    /// Waits until `done(events)` holds, or `timeout` passes; returns the events either way and
    /// whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Recorded]) -> bool,
    ) -> (bool, Vec<Recorded>) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (ok, ended) = match self.inner.lock() {
                Ok(i) => (done(&i.events), i.ended.is_some()),
                Err(_) => return (false, Vec::new()),
            };
            if ok || ended {
                return (ok, self.snapshot());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let events = self.snapshot();
                let ok = done(&events);
                return (ok, events);
            }
        }
    }
}

/// An app hosted by a driver: one actor of a case.
#[derive(Clone)]
pub struct App {
    /// The driver hosting it.
    pub driver: Driver,
    /// The shim's opaque id.
    pub id: String,
    /// Its full name, with the id its identity derives.
    pub name: SlimName,
    /// Its identity tokens' subject, if the shim says it (what revoking it names).
    pub subject: String,
    /// What it was told.
    pub events: EventLog,
    /// Keeps the event pump running while any handle of the app lives.
    _pump: Arc<PumpGuard>,
}

/// A session as one app knows it.
#[derive(Debug, Clone)]
pub struct SessionRef {
    /// The shim's opaque id.
    pub id: String,
    /// The wire session id, when the implementation exposes it (0 otherwise).
    pub wire_id: u32,
}

/// What the runner asks of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec {
    /// Group (else point-to-point).
    pub group: bool,
    /// MLS on.
    pub mls: bool,
    /// Reliable delivery: (interval, retries).
    pub reliable: Option<(Duration, u32)>,
}

impl App {
    fn sref(&self, s: &SessionRef, timeout: Duration) -> d::SessionRef {
        d::SessionRef {
            app_id: self.id.clone(),
            session_id: s.id.clone(),
            timeout_ms: ms(timeout),
        }
    }

    /// Tells the node that `name` is reachable through this app's link (the SDK's set_route).
    pub async fn set_route(&self, name: &str) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = d::NameRequest {
            app_id: self.id.clone(),
            name: name.into(),
            timeout_ms: ms(STEP),
        };
        self.driver
            .call("SetRoute", STEP, c.set_route(req))
            .await
            .map(drop)
    }

    /// Creates a session towards `peer` (p2p) or on channel `peer` (group).
    pub async fn create_session(
        &self,
        peer: &str,
        spec: SessionSpec,
        timeout: Duration,
    ) -> Result<SessionRef, Failure> {
        let req = d::CreateSessionRequest {
            app_id: self.id.clone(),
            r#type: if spec.group {
                d::SessionType::Group
            } else {
                d::SessionType::PointToPoint
            } as i32,
            peer: peer.into(),
            reliability: spec.reliable.map(|(i, n)| d::Reliability {
                interval_ms: ms(i),
                max_retries: n,
            }),
            mls: spec.mls,
            timeout_ms: ms(timeout),
        };
        let mut c = self.driver.client();
        let r = self
            .driver
            .call("CreateSession", timeout, c.create_session(req))
            .await?;
        self.session_from(r, "CreateSession")
    }

    fn session_from(&self, r: d::SessionResponse, what: &str) -> Result<SessionRef, Failure> {
        if r.session_id.is_empty() {
            return Err(Failure::Harness(format!(
                "driver {}: {what} returned no session_id",
                self.driver.name
            )));
        }
        Ok(SessionRef {
            id: r.session_id,
            wire_id: r.wire_session_id,
        })
    }

    /// Waits for the next session opened towards this app.
    pub async fn await_session(&self, timeout: Duration) -> Result<SessionRef, Failure> {
        let mut c = self.driver.client();
        let req = d::AwaitSessionRequest {
            app_id: self.id.clone(),
            timeout_ms: ms(timeout),
        };
        let r = self
            .driver
            .call("AwaitSession", timeout, c.await_session(req))
            .await?;
        self.session_from(r, "AwaitSession")
    }

    /// Invites `member` into group `s`.
    pub async fn invite(
        &self,
        s: &SessionRef,
        member: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        self.membership(false, s, member, timeout).await
    }

    /// Removes `member` from group `s`.
    pub async fn remove(
        &self,
        s: &SessionRef,
        member: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        self.membership(true, s, member, timeout).await
    }

    async fn membership(
        &self,
        remove: bool,
        s: &SessionRef,
        member: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = d::MemberRequest {
            app_id: self.id.clone(),
            session_id: s.id.clone(),
            name: member.into(),
            timeout_ms: ms(timeout),
        };
        let r = if remove {
            self.driver.call("Remove", timeout, c.remove(req)).await
        } else {
            self.driver.call("Invite", timeout, c.invite(req)).await
        };
        r.map(drop)
    }

    /// Leaves session `s`.
    pub async fn leave(&self, s: &SessionRef, timeout: Duration) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = self.sref(s, timeout);
        self.driver
            .call("Leave", timeout, c.leave(req))
            .await
            .map(drop)
    }

    /// Closes session `s`.
    pub async fn close(&self, s: &SessionRef, timeout: Duration) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = self.sref(s, timeout);
        self.driver
            .call("CloseSession", timeout, c.close_session(req))
            .await
            .map(drop)
    }

    /// Publishes `payloads` in order; with `wait`, returns each one's outcome.
    pub async fn publish(
        &self,
        s: &SessionRef,
        payloads: Vec<Vec<u8>>,
        wait: bool,
        timeout: Duration,
    ) -> Result<Vec<d::PublishOutcome>, Failure> {
        let n = payloads.len();
        let mut c = self.driver.client();
        let req = d::PublishRequest {
            app_id: self.id.clone(),
            session_id: s.id.clone(),
            payloads: payloads.into_iter().map(Into::into).collect(),
            wait,
            timeout_ms: ms(timeout),
        };
        let r = self.driver.call("Publish", timeout, c.publish(req)).await?;
        if r.outcomes.len() != n {
            return Err(Failure::Harness(format!(
                "driver {}: Publish of {n} payloads returned {} outcomes",
                self.driver.name,
                r.outcomes.len()
            )));
        }
        Ok(r.outcomes)
    }

    /// Tells this app that `target` is revoked (SLIM-REV-007/008).
    pub async fn revoke(&self, target: d::revoke_request::Target) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = d::RevokeRequest {
            app_id: self.id.clone(),
            target: Some(target),
        };
        self.driver
            .call("RevokeIdentity", STEP, c.revoke_identity(req))
            .await
            .map(drop)
    }

    /// The MLS state of `s` as this app sees it.
    pub async fn state_auth(&self, s: &SessionRef) -> Result<d::StateAuthResponse, Failure> {
        let mut c = self.driver.client();
        let req = self.sref(s, STEP);
        self.driver.call("StateAuth", STEP, c.state_auth(req)).await
    }

    /// The members of `s` as this app sees them.
    pub async fn members(&self, s: &SessionRef) -> Result<Vec<String>, Failure> {
        let mut c = self.driver.client();
        let req = self.sref(s, STEP);
        Ok(self
            .driver
            .call("Members", STEP, c.members(req))
            .await?
            .members)
    }

    /// Frees the app (best effort: a case that already failed still frees its apps).
    pub async fn free(&self) -> Result<(), Failure> {
        let mut c = self.driver.client();
        let req = d::AppRef {
            app_id: self.id.clone(),
        };
        self.driver.call("Free", STEP, c.free(req)).await.map(drop)
    }

    /// Payloads received on session `s` (shim id), in order.
    pub fn received(&self, s: &SessionRef) -> Vec<(String, Vec<u8>)> {
        self.events
            .snapshot()
            .into_iter()
            .filter_map(|r| match r.event {
                d::event::Kind::Message(m) if m.session_id == s.id => {
                    Some((m.sender, m.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    /// Waits until session `s` has received every payload of `expected` at least once (or
    /// `timeout` passes); returns everything it received, so the caller judges duplicates and
    /// order. Waiting for the payloads themselves, not a count, keeps earlier traffic and
    /// duplicates from ending the wait early.
    pub async fn wait_received(
        &self,
        s: &SessionRef,
        expected: &[Vec<u8>],
        timeout: Duration,
    ) -> Vec<(String, Vec<u8>)> {
        let id = s.id.clone();
        self.events
            .wait_until(timeout, |evs| {
                expected.iter().all(|want| {
                    evs.iter().any(|r| {
                        matches!(&r.event, d::event::Kind::Message(m)
                            if m.session_id == id && m.payload.as_ref() == want.as_slice())
                    })
                })
            })
            .await;
        self.received(s)
    }

    /// Waits for an event matching `pred`; `None` after `timeout`.
    pub async fn wait_event(
        &self,
        timeout: Duration,
        pred: impl Fn(&d::event::Kind) -> bool,
    ) -> Option<d::event::Kind> {
        let (ok, evs) = self
            .events
            .wait_until(timeout, |evs| evs.iter().any(|r| pred(&r.event)))
            .await;
        if !ok {
            return None;
        }
        evs.into_iter().map(|r| r.event).find(|e| pred(e))
    }
}

/// The text of a name as the runner compares them: the three components, and the id when the
/// text has one, in canonical form (so `org/ns/a/<uuid>` and `org/ns/a/<decimal>` agree).
pub fn canonical_name(text: &str) -> String {
    match text.parse::<SlimName>() {
        Ok(n) => n.to_string(),
        Err(_) => text.to_string(),
    }
}

/// The name without its id.
pub fn base_name(text: &str) -> String {
    text.split('/').take(3).collect::<Vec<_>>().join("/")
}
