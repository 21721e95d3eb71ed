//! `routing.yaml`: routing scenarios the conformance runner plays against a live node
//! (SLIM-ROUTE-*, SLIM-SUB-*).
//!
//! A scenario declares links (opened and negotiated in order before step 1) and a list of steps:
//! subscribe, unsubscribe, publish or close on one link, each with what the node must do. The
//! expected outcomes are written by hand in [`scenarios`] from the requirement texts of
//! `spec/requirements.yaml`; nothing here runs relay code, and this crate does not depend on
//! `slim-reference`.
//!
//! Semantics a runner implements:
//! - Names are `org/ns/svc` (wildcard id) or `org/ns/svc/<id>` in slim-proto's text form; the
//!   runner hashes them with slim-proto and sends both the hashed and the string form. A runner
//!   may replace the first component (org) of every name in a scenario with a unique per-run
//!   value to isolate runs on a shared node.
//! - Subscribe/Unsubscribe/Publish use `ttl` when given, otherwise 8 (SLIM-ROUTE-010).
//! - `expect_ack`: exactly one SubscriptionAck with the step's subscription_id, `success` and, if
//!   given, exactly that `error` text. `no_ack: true`: the node sends no ack at all.
//! - Publish sends `count` Publishes (default 1), each with `fanout`. [`Delivery::To`]: each
//!   listed link receives exactly `count` copies, every other link none. [`Delivery::OneOf`]:
//!   `count` copies in total, each to one of the listed links, round robin so each link gets
//!   `count / len` when `count` is a multiple of `len`; no other link gets any.
//!   [`Delivery::Nobody`] (`none: true`): nobody receives anything.
//! - Close ends the link's stream from the client side.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use slim_proto::names::SlimName;

use crate::common::{FileReport, GENERATOR, SCHEMA};

/// File name.
pub const FILE: &str = "routing.yaml";

/// The contents of `routing.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// Schema version (1).
    pub schema: u32,
    /// `routing`.
    pub area: String,
    /// What the file pins and how a runner plays it.
    pub description: String,
    /// Every requirement id cited by a scenario, sorted.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// The scenarios, in the order a runner plays them.
    pub scenarios: Vec<Scenario>,
}

/// One independent routing scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Kebab-case, unique in the file.
    pub id: String,
    /// The requirement ids the scenario checks.
    pub requirements: Vec<String>,
    /// What the scenario shows, in one or two sentences.
    pub comment: String,
    /// Link labels; the runner opens and negotiates them in this order before step 1.
    pub links: Vec<String>,
    /// The steps, played in order.
    pub steps: Vec<Step>,
}

/// One action on one link and what the node must do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The link that acts (one of [`Scenario::links`]).
    pub link: String,
    /// What it does.
    pub op: Op,
    /// The name subscribed, unsubscribed or published to (not for `close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Subscribe/Unsubscribe: the subscription id (0 = no ack wanted, SLIM-SUB-002).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<u64>,
    /// Publish: the header's fanout (1 = anycast, anything else = broadcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<u32>,
    /// The header's ttl; absent = 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Publish: how many Publishes to send; absent = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Subscribe/Unsubscribe: the one SubscriptionAck the node must send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_ack: Option<AckExpect>,
    /// Subscribe/Unsubscribe: `true` = the node must send no SubscriptionAck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_ack: Option<bool>,
    /// Publish: who receives the Publishes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_yaml::with::singleton_map"
    )]
    pub expect: Option<Delivery>,
}

/// The action of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Send a Subscribe for `name` with `subscription_id`.
    Subscribe,
    /// Send an Unsubscribe for `name` with `subscription_id`.
    Unsubscribe,
    /// Send `count` Publishes to `name` with `fanout`.
    Publish,
    /// Close the link's stream.
    Close,
}

/// The SubscriptionAck a step expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckExpect {
    /// The ack's `success`.
    pub success: bool,
    /// The ack's exact `error` text when given (SLIM-SUB-005); absent = not checked when
    /// `success` is false, empty when it is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Who must receive the Publishes of a step. In YAML a one-key map: `{to: [..]}`,
/// `{one_of: [..]}` or `{none: true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Each listed link receives exactly `count` copies; every other link receives none.
    To(Vec<String>),
    /// Anycast: `count` copies in total, each to one listed link, spread round robin; no other
    /// link receives any.
    OneOf(Vec<String>),
    /// `none: true`: no link receives anything.
    #[serde(rename = "none")]
    Nobody(bool),
}

/// Parses the committed `routing.yaml` compiled into this crate.
///
/// The file is generated from [`scenarios`] and a test keeps the two identical, so this only
/// fails if the committed file was edited by hand into invalid YAML.
pub fn builtin() -> RoutingFile {
    match serde_yaml::from_str(include_str!("../routing.yaml")) {
        Ok(file) => file,
        // The file is compiled in and checked by this crate's tests: not runtime input.
        Err(e) => panic!("vectors/routing.yaml does not parse: {e}"),
    }
}

/// The whole file as the generator writes it.
pub fn build() -> RoutingFile {
    let scenarios = scenarios();
    let requirements: BTreeSet<String> = scenarios
        .iter()
        .flat_map(|s| s.requirements.iter().cloned())
        .collect();
    RoutingFile {
        schema: SCHEMA,
        area: "routing".into(),
        description: "Routing scenarios a conformance runner plays against a live node. Before \
            step 1 the runner opens and negotiates the scenario's links in order. Names are \
            org/ns/svc (the wildcard id) or org/ns/svc/<id> in slim-proto's text form, hashed by \
            the runner with slim-proto; a runner may replace the first component (org) of every \
            name in a scenario with a unique per-run value to isolate runs. ttl defaults to 8 \
            and count to 1. expect_ack: exactly one SubscriptionAck with the step's \
            subscription_id, that success and, when given, that exact error; no_ack: true: no \
            ack at all. expect {to: [links]}: each listed link receives exactly count copies and \
            every other link none; {one_of: [links]}: count copies in total, each to one listed \
            link, round robin (count/len each when count is a multiple of len), none elsewhere; \
            {none: true}: nobody receives anything. close ends the link's stream."
            .into(),
        requirements: requirements.into_iter().collect(),
        generator: GENERATOR.into(),
        scenarios,
    }
}

// ---- step builders ------------------------------------------------------------------------

fn step(link: &str, op: Op) -> Step {
    Step {
        link: link.into(),
        op,
        name: None,
        subscription_id: None,
        fanout: None,
        ttl: None,
        count: None,
        expect_ack: None,
        no_ack: None,
        expect: None,
    }
}

fn ok() -> Option<AckExpect> {
    Some(AckExpect {
        success: true,
        error: None,
    })
}

fn refused(error: &str) -> Option<AckExpect> {
    Some(AckExpect {
        success: false,
        error: Some(error.into()),
    })
}

/// Subscribe acked with success.
fn sub(link: &str, name: &str, id: u64) -> Step {
    Step {
        name: Some(name.into()),
        subscription_id: Some(id),
        expect_ack: ok(),
        ..step(link, Op::Subscribe)
    }
}

/// Unsubscribe with an expected ack.
fn unsub(link: &str, name: &str, id: u64, ack: Option<AckExpect>) -> Step {
    Step {
        name: Some(name.into()),
        subscription_id: Some(id),
        expect_ack: ack,
        ..step(link, Op::Unsubscribe)
    }
}

/// A step that must get no ack (subscription id 0, or a dropped message).
fn silent(mut s: Step) -> Step {
    s.expect_ack = None;
    s.no_ack = Some(true);
    s
}

fn with_ttl(mut s: Step, ttl: u32) -> Step {
    s.ttl = Some(ttl);
    s
}

fn publish(link: &str, name: &str, fanout: u32, count: u32, expect: Delivery) -> Step {
    Step {
        name: Some(name.into()),
        fanout: Some(fanout),
        count: Some(count),
        expect: Some(expect),
        ..step(link, Op::Publish)
    }
}

fn to(links: &[&str]) -> Delivery {
    Delivery::To(links.iter().map(|s| s.to_string()).collect())
}

fn one_of(links: &[&str]) -> Delivery {
    Delivery::OneOf(links.iter().map(|s| s.to_string()).collect())
}

fn nobody() -> Delivery {
    Delivery::Nobody(true)
}

fn scenario(id: &str, reqs: &[&str], comment: &str, links: &[&str], steps: Vec<Step>) -> Scenario {
    Scenario {
        id: id.into(),
        requirements: reqs.iter().map(|s| s.to_string()).collect(),
        comment: comment.into(),
        links: links.iter().map(|s| s.to_string()).collect(),
        steps,
    }
}

const SVC: &str = "org/ns/svc";
const SVC1: &str = "org/ns/svc/1";
const SVC2: &str = "org/ns/svc/2";
const SVC3: &str = "org/ns/svc/3";

/// The scenarios, with outcomes written by hand from `spec/requirements.yaml`.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        // SLIM-ROUTE-002: exact id reaches only the link subscribed to that id.
        scenario(
            "exact-id",
            &["SLIM-ROUTE-002", "SLIM-SUB-001", "SLIM-SUB-003"],
            "A Publish to a specific id reaches only the link subscribed to that id.",
            &["A", "B", "C"],
            vec![
                sub("B", SVC1, 11),
                sub("C", SVC2, 12),
                publish("A", SVC1, 1, 1, to(&["B"])),
            ],
        ),
        scenario(
            "exact-id-broadcast",
            &["SLIM-ROUTE-002", "SLIM-ROUTE-006"],
            "A broadcast (fanout 256) Publish to a specific id still reaches only the link \
             subscribed to that id, once per Publish.",
            &["A", "B", "C"],
            vec![
                sub("B", SVC1, 11),
                sub("C", SVC2, 12),
                publish("A", SVC1, 256, 2, to(&["B"])),
            ],
        ),
        // SLIM-ROUTE-003: wildcard publish matches any id.
        scenario(
            "wildcard-publish-reaches-specific-id",
            &["SLIM-ROUTE-003", "SLIM-NAME-003"],
            "A Publish to the wildcard id reaches a link subscribed to a specific id under the \
             same three components.",
            &["A", "B"],
            vec![sub("B", SVC1, 21), publish("A", SVC, 1, 2, to(&["B"]))],
        ),
        scenario(
            "wildcard-subscription-not-matched-by-id",
            &["SLIM-ROUTE-003"],
            "A subscription made with the wildcard id is not matched by a Publish to a specific \
             id, only by a wildcard Publish.",
            &["A", "B"],
            vec![
                sub("B", SVC, 22),
                publish("A", SVC1, 1, 1, nobody()),
                publish("A", SVC1, 256, 1, nobody()),
                publish("A", SVC, 1, 1, to(&["B"])),
            ],
        ),
        // SLIM-ROUTE-004: no route, nothing back, the link stays usable.
        scenario(
            "no-route-then-delivered",
            &["SLIM-ROUTE-004"],
            "A Publish that matches nothing is dropped silently and the sender's link stays \
             usable: its next Publish is delivered.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 31),
                publish("A", "org/ns/nobody-here", 1, 1, nobody()),
                publish("A", SVC2, 256, 1, nobody()),
                publish("A", SVC1, 1, 1, to(&["B"])),
            ],
        ),
        // SLIM-ROUTE-005: anycast round robin.
        scenario(
            "anycast-round-robin-2",
            &["SLIM-ROUTE-005", "SLIM-ROUTE-003"],
            "Four anycast Publishes to the wildcard id with two subscribers on different ids: \
             each subscriber gets two, one copy per Publish.",
            &["A", "B", "C"],
            vec![
                sub("B", SVC1, 41),
                sub("C", SVC2, 42),
                publish("A", SVC, 1, 4, one_of(&["B", "C"])),
            ],
        ),
        scenario(
            "anycast-round-robin-3",
            &["SLIM-ROUTE-005", "SLIM-ROUTE-003"],
            "Six anycast Publishes to the wildcard id with three subscribers: each gets two.",
            &["A", "B", "C", "D"],
            vec![
                sub("B", SVC1, 43),
                sub("C", SVC2, 44),
                sub("D", SVC3, 45),
                publish("A", SVC, 1, 6, one_of(&["B", "C", "D"])),
            ],
        ),
        scenario(
            "anycast-same-id",
            &["SLIM-ROUTE-005", "SLIM-ROUTE-002"],
            "Two links subscribed to the same id share anycast Publishes to that id round \
             robin; a third link on another id gets none.",
            &["A", "B", "C", "D"],
            vec![
                sub("B", "org/ns/svc/7", 46),
                sub("C", "org/ns/svc/7", 47),
                sub("D", SVC2, 48),
                publish("A", "org/ns/svc/7", 1, 4, one_of(&["B", "C"])),
            ],
        ),
        // SLIM-ROUTE-006: every fanout other than 1 is broadcast.
        broadcast(0),
        broadcast(2),
        broadcast(256),
        // SLIM-ROUTE-007: no echo.
        scenario(
            "no-echo",
            &["SLIM-ROUTE-007"],
            "A sender subscribed to the destination does not get its own Publish back; the \
             other subscriber does.",
            &["A", "B"],
            vec![
                sub("A", SVC1, 51),
                sub("B", SVC1, 52),
                publish("A", SVC1, 256, 1, to(&["B"])),
                publish("A", SVC1, 1, 2, to(&["B"])),
            ],
        ),
        scenario(
            "no-echo-sole-subscriber",
            &["SLIM-ROUTE-007", "SLIM-ROUTE-004"],
            "When the sender is the only subscriber, nothing is delivered (and nothing is sent \
             back).",
            &["A", "B"],
            vec![
                sub("A", SVC1, 53),
                publish("A", SVC1, 1, 1, nobody()),
                publish("A", SVC1, 256, 1, nobody()),
                publish("A", SVC, 1, 1, nobody()),
            ],
        ),
        // SLIM-SUB-004: unsubscribe removes the route.
        scenario(
            "unsubscribe-stops-delivery",
            &["SLIM-SUB-004", "SLIM-SUB-001"],
            "After an acked Unsubscribe with the Subscribe's id and name, Publishes to the name \
             are no longer delivered.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 61),
                publish("A", SVC1, 1, 1, to(&["B"])),
                unsub("B", SVC1, 61, ok()),
                publish("A", SVC1, 1, 1, nobody()),
                publish("A", SVC, 256, 1, nobody()),
            ],
        ),
        // SLIM-SUB-007: two subscription ids, one copy.
        scenario(
            "two-ids-one-copy",
            &["SLIM-SUB-007", "SLIM-SUB-004"],
            "A link that subscribed one name under two subscription ids gets one copy per \
             Publish, keeps receiving after one Unsubscribe, and stops after both.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 71),
                sub("B", SVC1, 72),
                publish("A", SVC1, 256, 1, to(&["B"])),
                publish("A", SVC1, 1, 2, to(&["B"])),
                unsub("B", SVC1, 71, ok()),
                publish("A", SVC1, 256, 1, to(&["B"])),
                unsub("B", SVC1, 72, ok()),
                publish("A", SVC1, 256, 1, nobody()),
            ],
        ),
        // SLIM-SUB-002: subscription id 0.
        scenario(
            "subscription-id-zero",
            &["SLIM-SUB-002"],
            "A Subscribe with subscription_id 0 gets no ack but is applied; so is an \
             Unsubscribe with id 0.",
            &["A", "B"],
            vec![
                silent(Step {
                    name: Some(SVC1.into()),
                    subscription_id: Some(0),
                    ..step("B", Op::Subscribe)
                }),
                publish("A", SVC1, 1, 1, to(&["B"])),
                silent(unsub("B", SVC1, 0, None)),
                publish("A", SVC1, 1, 1, nobody()),
            ],
        ),
        // SLIM-SUB-006: idempotent subscribe.
        scenario(
            "repeated-subscribe",
            &["SLIM-SUB-006", "SLIM-SUB-001"],
            "Repeating a Subscribe (same id, same name, same link) is acked with success and \
             creates no second record: one copy per Publish, and one Unsubscribe removes it.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 81),
                sub("B", SVC1, 81),
                publish("A", SVC1, 256, 1, to(&["B"])),
                unsub("B", SVC1, 81, ok()),
                publish("A", SVC1, 256, 1, nobody()),
            ],
        ),
        // SLIM-SUB-008: cleanup on close.
        scenario(
            "close-removes-subscriptions",
            &["SLIM-SUB-008", "SLIM-ROUTE-005"],
            "When a subscriber closes its link its subscriptions go: anycast to the wildcard id \
             then reaches the remaining subscriber every time.",
            &["A", "B", "C"],
            vec![
                sub("B", SVC1, 91),
                sub("C", SVC2, 92),
                step("B", Op::Close),
                publish("A", SVC, 1, 4, to(&["C"])),
                publish("A", SVC1, 256, 1, nobody()),
            ],
        ),
        // SLIM-SUB-005: the real node's ack error texts (WIRE.md §4.2).
        scenario(
            "unsubscribe-never-subscribed",
            &["SLIM-SUB-005", "SLIM-SUB-001"],
            "Unsubscribing a name whose three components nobody subscribed is refused with \
             \"subscription not found\".",
            &["A"],
            vec![unsub(
                "A",
                "org/ns/never-subscribed/1",
                101,
                refused("subscription not found"),
            )],
        ),
        scenario(
            "unsubscribe-unknown-id",
            &["SLIM-SUB-005"],
            "Unsubscribing an id nobody subscribed under a known name prefix is refused with \
             \"id not found: <id>\", the id printed as a hyphenated UUID or NULL_COMPONENT; the \
             existing subscription is kept.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 111),
                unsub(
                    "B",
                    SVC2,
                    112,
                    refused("id not found: 00000000-0000-0000-0000-000000000002"),
                ),
                unsub("B", SVC, 113, refused("id not found: NULL_COMPONENT")),
                publish("A", SVC1, 1, 1, to(&["B"])),
            ],
        ),
        scenario(
            "unsubscribe-unknown-subscription-id",
            &["SLIM-SUB-005", "SLIM-SUB-004"],
            "Unsubscribing a subscribed name with a subscription_id that never subscribed it is \
             refused with \"subscription id not found: <n>\"; the subscription is kept.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 121),
                unsub("B", SVC1, 122, refused("subscription id not found: 122")),
                publish("A", SVC1, 1, 1, to(&["B"])),
            ],
        ),
        // SLIM-ROUTE-010: TTL.
        scenario(
            "ttl-publish",
            &["SLIM-ROUTE-010"],
            "A Publish with ttl 1 or 0 is dropped at the first node; ttl 2 is delivered.",
            &["A", "B"],
            vec![
                sub("B", SVC1, 131),
                with_ttl(publish("A", SVC1, 1, 1, nobody()), 1),
                with_ttl(publish("A", SVC1, 256, 1, nobody()), 0),
                with_ttl(publish("A", SVC1, 1, 1, to(&["B"])), 2),
            ],
        ),
        scenario(
            "ttl-subscribe",
            &["SLIM-ROUTE-010", "SLIM-SUB-001"],
            "A Subscribe with ttl 1 or 0 is dropped: no ack and no route. With ttl 2 it is acked \
             and applied.",
            &["A", "B"],
            vec![
                silent(with_ttl(sub("B", SVC1, 141), 1)),
                silent(with_ttl(sub("B", SVC1, 142), 0)),
                publish("A", SVC1, 256, 1, nobody()),
                with_ttl(sub("B", SVC1, 143), 2),
                publish("A", SVC1, 256, 1, to(&["B"])),
            ],
        ),
    ]
}

/// SLIM-ROUTE-006: a broadcast with `fanout` to three subscribers.
fn broadcast(fanout: u32) -> Scenario {
    scenario(
        &format!("broadcast-fanout-{fanout}"),
        &["SLIM-ROUTE-006", "SLIM-ROUTE-003"],
        &format!(
            "A Publish with fanout {fanout} to the wildcard id reaches each of three subscribers \
             exactly once."
        ),
        &["A", "B", "C", "D"],
        vec![
            sub("B", SVC1, 150 + u64::from(fanout)),
            sub("C", SVC2, 1150 + u64::from(fanout)),
            sub("D", SVC3, 2150 + u64::from(fanout)),
            publish("A", SVC, fanout, 2, to(&["B", "C", "D"])),
        ],
    )
}

/// Checks that the file parses (done by the caller), that scenario ids are unique kebab-case,
/// that every name parses with slim-proto, that every link referenced is declared, and that each
/// step has the fields its op needs.
pub fn verify(file: &RoutingFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    r.check_header(file.schema, &file.area, &file.generator, &[]);
    let mut seen = BTreeSet::new();
    for s in &file.scenarios {
        r.checked += 1;
        let mut problems = Vec::new();
        if !seen.insert(s.id.as_str()) {
            problems.push("duplicate scenario id".to_string());
        }
        if s.id.is_empty()
            || !s
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            problems.push("id is not kebab-case".into());
        }
        if s.requirements.is_empty() {
            problems.push("cites no requirement".into());
        }
        let declared: BTreeSet<&str> = s.links.iter().map(String::as_str).collect();
        if declared.len() != s.links.len() {
            problems.push("a link is declared twice".into());
        }
        for (i, st) in s.steps.iter().enumerate() {
            let n = i + 1;
            if !declared.contains(st.link.as_str()) {
                problems.push(format!("step {n}: link {} is not declared", st.link));
            }
            if let Some(name) = &st.name {
                if let Err(e) = SlimName::from_str(name) {
                    problems.push(format!("step {n}: {e}"));
                }
            }
            let needs_name = st.op != Op::Close;
            if needs_name && st.name.is_none() {
                problems.push(format!("step {n}: {:?} needs a name", st.op));
            }
            match st.op {
                Op::Subscribe | Op::Unsubscribe => {
                    if st.subscription_id.is_none() {
                        problems.push(format!("step {n}: needs a subscription_id"));
                    }
                    if st.expect_ack.is_some() == (st.no_ack == Some(true)) {
                        problems.push(format!("step {n}: needs exactly one of expect_ack, no_ack"));
                    }
                    if st.expect.is_some() || st.fanout.is_some() || st.count.is_some() {
                        problems.push(format!("step {n}: expect/fanout/count are for publish"));
                    }
                }
                Op::Publish => {
                    if st.fanout.is_none() {
                        problems.push(format!("step {n}: publish needs a fanout"));
                    }
                    match &st.expect {
                        None => problems.push(format!("step {n}: publish needs expect")),
                        Some(Delivery::To(l) | Delivery::OneOf(l)) => {
                            if l.is_empty() {
                                problems.push(format!("step {n}: empty delivery list"));
                            }
                            for link in l {
                                if !declared.contains(link.as_str()) {
                                    problems.push(format!(
                                        "step {n}: expects delivery to undeclared link {link}"
                                    ));
                                }
                            }
                        }
                        Some(Delivery::Nobody(b)) => {
                            if !b {
                                problems.push(format!("step {n}: `none` must be true"));
                            }
                        }
                    }
                    if st.expect_ack.is_some()
                        || st.no_ack.is_some()
                        || st.subscription_id.is_some()
                    {
                        problems.push(format!(
                            "step {n}: ack fields are for subscribe/unsubscribe"
                        ));
                    }
                }
                Op::Close => {}
            }
        }
        if problems.is_empty() {
            r.passed += 1;
        } else {
            r.failures
                .push(format!("scenario {}: {}", s.id, problems.join("; ")));
        }
    }
    r
}
