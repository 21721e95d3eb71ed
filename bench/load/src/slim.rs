//! The SLIM transport of a run: raw gRPC clients, one connection each, driven by the
//! [`Harness`](crate::harness::Harness).

use std::sync::Arc;

use tokio::sync::watch;

use crate::client::{publish_parts, BenchLink, PublishTemplate};
use crate::error::BenchError;
use crate::harness::{Counter, Harness, RunConfig, StampSink, Tally};
use crate::payload::Stamp;
use crate::result::Metrics;
use crate::scenario::{Names, Scenario};

/// What a receiving client does with the benchmark publishes addressed to it.
#[derive(Clone)]
enum Role {
    /// Counts them (subscribers; `reqrep` publishers counting echoes from `only`).
    Count { only: Option<u32> },
    /// Echoes each one back to its publisher (`reqrep` subscribers); one template per publisher.
    Echo(Arc<Vec<PublishTemplate>>),
    /// Reads and drops everything (publishers that expect nothing).
    Drain,
}

struct ReceiverSpec {
    link: BenchLink,
    /// Hashes of the destination this receiver accepts.
    wants: [u64; 3],
    role: Role,
}

/// A SLIM publisher: the pre-signed template with the stamp patched in, into the gRPC stream.
struct SlimSink {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    template: PublishTemplate,
}

impl StampSink for SlimSink {
    async fn send(&mut self, stamp: Stamp) -> bool {
        self.tx.send(self.template.render(stamp)).await.is_ok()
    }
}

/// One run over SLIM: raw gRPC clients, one connection each.
pub(crate) async fn run(cfg: &RunConfig) -> Result<Metrics, BenchError> {
    let mut h = Harness::new(cfg)?;
    let p = h.params.clone();
    let scenario = p.scenario;
    let names = Names::new(&h.run_id);

    // Subscribers first, each waiting for its ack, so no publish can miss a subscription.
    let mut receivers = Vec::new();
    for j in 0..p.subscribers {
        let mut link = BenchLink::connect(&cfg.url).await?;
        let name = names.subscription(scenario, j);
        link.subscribe(&name, j as u64 + 1).await?;
        receivers.push((j, link, name));
    }
    let mut publishers = Vec::new();
    for i in 0..p.publishers {
        let mut link = BenchLink::connect(&cfg.url).await?;
        let me = names.publisher(i);
        if scenario == Scenario::Reqrep {
            link.subscribe(&me, 1_000_000 + i as u64).await?;
        }
        publishers.push((i, link, me));
    }

    // Templates and receiver roles.
    let mut specs = Vec::new();
    for (j, link, name) in receivers {
        let role = if scenario == Scenario::Reqrep {
            let src = names.subscriber_source(j);
            let echoes = (0..p.publishers)
                .map(|i| {
                    PublishTemplate::new(
                        &src,
                        &names.publisher(i),
                        slim_proto::ANYCAST_FANOUT,
                        p.size,
                        link.mac.as_ref(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Role::Echo(Arc::new(echoes))
        } else {
            Role::Count { only: None }
        };
        specs.push(ReceiverSpec {
            link,
            wants: name.hashes(),
            role,
        });
    }
    let mut senders = Vec::new();
    for (i, link, me) in publishers {
        let dst = names.destination(scenario, i);
        let template =
            PublishTemplate::new(&me, &dst, scenario.fanout(), p.size, link.mac.as_ref())?;
        senders.push((i, link.tx.clone(), template));
        let role = if scenario == Scenario::Reqrep {
            Role::Count {
                only: Some(i as u32),
            }
        } else {
            Role::Drain
        };
        specs.push(ReceiverSpec {
            link,
            wants: me.hashes(),
            role,
        });
    }

    h.start();
    let mut receiver_tasks = Vec::new();
    for spec in specs {
        let tally = h.tally(matches!(spec.role, Role::Count { .. }))?;
        receiver_tasks.push(tokio::spawn(receive(spec, tally, h.counter(), h.done())));
    }
    let publisher_tasks = senders
        .into_iter()
        .map(|(i, tx, template)| h.spawn_publisher(i, SlimSink { tx, template }))
        .collect();
    h.finish(publisher_tasks, receiver_tasks).await
}

/// One receiving client's loop, until the run is done or the stream ends.
async fn receive(
    spec: ReceiverSpec,
    mut tally: Tally,
    counter: Counter,
    mut done: watch::Receiver<bool>,
) -> Result<Tally, BenchError> {
    let ReceiverSpec {
        mut link,
        wants,
        role,
    } = spec;
    loop {
        let msg = tokio::select! {
            biased;
            _ = done.changed() => break,
            m = link.rx.message() => match m {
                Ok(Some(m)) => m,
                // The node ended the stream: whatever did not arrive counts as lost.
                Ok(None) | Err(_) => break,
            },
        };
        let Some((dst, blob)) = publish_parts(&msg) else {
            continue;
        };
        if matches!(role, Role::Drain) {
            continue;
        }
        let stamp = match counter.accept(blob) {
            Some(s) if dst == wants => s,
            _ => {
                tally.ignored += 1;
                continue;
            }
        };
        match &role {
            Role::Drain => {}
            Role::Echo(templates) => {
                if let Some(t) = templates.get(stamp.publisher as usize) {
                    let echo = t.render_payload(blob);
                    // A node that stops reading must not keep this task past the end of the run.
                    let sent = tokio::select! {
                        _ = done.changed() => break,
                        r = link.tx.send(echo) => r,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            }
            Role::Count { only } => {
                if only.is_some_and(|o| o != stamp.publisher) {
                    tally.ignored += 1;
                    continue;
                }
                counter.count(&mut tally, stamp);
            }
        }
    }
    Ok(tally)
}
