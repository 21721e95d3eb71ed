//! `encodings.yaml`: canonical protobuf encodings of each message kind (SLIM-TRANS-002,
//! SLIM-VAL-001).
//!
//! Each vector describes a `dataplane.proto.v1.Message` field by field (`message`) and gives its
//! canonical proto3 encoding (`hex`: fields in number order, default scalars omitted, `optional`
//! fields and sub-messages written when present). The generator encodes with a small protobuf
//! writer of its own that follows `proto/dataplane/v1/data_plane.proto`'s field numbers; the
//! verifier decodes with slim-proto's generated types, re-encodes with prost and compares bytes,
//! and checks the message kind with `slim_proto::validate`.

use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use slim_proto::mac::LinkMac;
use slim_proto::pb;
use slim_proto::validate::{self, Kind, ValidationError};

use crate::common::{
    hx, hx64, unhex, xxh64_component, FileReport, Outcome, GENERATOR, SCHEMA, WILDCARD,
};
use crate::VectorError;

/// File name.
pub const FILE: &str = "encodings.yaml";

/// The contents of `encodings.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingsFile {
    /// Schema version (1).
    pub schema: u32,
    /// `encodings`.
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Requirement ids pinned by the file.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// The vectors, tc_ids 1..n.
    pub vectors: Vec<EncodingVector>,
}

/// One encoded message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// `valid`: decodes to `message` and re-encodes to `hex`; `invalid`: must be refused (by
    /// the decoder, or as a message with no `message_type`); `acceptable`: non-canonical bytes
    /// a decoder should accept, re-encoding to `canonical_hex`.
    pub result: Outcome,
    /// Why an invalid or acceptable vector is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `subscribe`, `unsubscribe`, `publish`, `link` or `subscription_ack` (valid and acceptable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The message field by field (field names of data_plane.proto; bytes as hex, u64 name
    /// hashes as 0x-hex, enums by name). Absent for undecodable bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Value>,
    /// The bytes, hex.
    pub hex: String,
    /// Acceptable vectors: the canonical re-encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_hex: Option<String>,
    /// Invalid vectors: `decode` (not a valid protobuf Message) or `no_message_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---- a minimal protobuf writer --------------------------------------------------------------

/// A field value as the writer knows it.
#[derive(Clone)]
enum V {
    /// varint, shown as a number.
    U(u64),
    /// varint, shown as 0x-hex (name hashes and ids).
    UHex(u64),
    /// varint 0/1.
    B(bool),
    /// varint, shown by name.
    E(i32, &'static str),
    /// length-delimited UTF-8.
    S(String),
    /// length-delimited bytes, shown as hex.
    Bytes(Vec<u8>),
    /// length-delimited sub-message.
    M(Vec<F>),
}

#[derive(Clone)]
struct F {
    name: &'static str,
    num: u32,
    v: V,
}

fn f(name: &'static str, num: u32, v: V) -> F {
    F { name, num, v }
}

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn encode(fields: &[F]) -> Vec<u8> {
    let mut out = Vec::new();
    for fl in fields {
        let key = |wt: u64| (u64::from(fl.num) << 3) | wt;
        match &fl.v {
            V::U(x) | V::UHex(x) => {
                varint(&mut out, key(0));
                varint(&mut out, *x);
            }
            V::B(b) => {
                varint(&mut out, key(0));
                varint(&mut out, u64::from(*b));
            }
            V::E(n, _) => {
                varint(&mut out, key(0));
                // Negative enum values are sign-extended to 64 bits; none are used here.
                varint(&mut out, *n as i64 as u64);
            }
            V::S(s) => {
                varint(&mut out, key(2));
                varint(&mut out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            V::Bytes(b) => {
                varint(&mut out, key(2));
                varint(&mut out, b.len() as u64);
                out.extend_from_slice(b);
            }
            V::M(m) => {
                let inner = encode(m);
                varint(&mut out, key(2));
                varint(&mut out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
        }
    }
    out
}

fn describe(fields: &[F]) -> Value {
    let mut m = Mapping::new();
    for fl in fields {
        let v = match &fl.v {
            V::U(x) => Value::from(*x),
            V::UHex(x) => Value::from(format!("0x{}", hx64(*x))),
            V::B(b) => Value::from(*b),
            V::E(n, name) => Value::from(format!("{name} ({n})")),
            V::S(s) => Value::from(s.clone()),
            V::Bytes(b) => Value::from(hx(b)),
            V::M(inner) => describe(inner),
        };
        m.insert(Value::from(fl.name), v);
    }
    Value::Mapping(m)
}

// Proto3 canonical form: a non-optional scalar at its default value is not written.
fn u(name: &'static str, num: u32, x: u64) -> Option<F> {
    (x != 0).then(|| f(name, num, V::U(x)))
}
fn b(name: &'static str, num: u32, x: bool) -> Option<F> {
    x.then(|| f(name, num, V::B(x)))
}
fn s(name: &'static str, num: u32, x: &str) -> Option<F> {
    (!x.is_empty()).then(|| f(name, num, V::S(x.into())))
}
fn e(name: &'static str, num: u32, x: i32, label: &'static str) -> Option<F> {
    (x != 0).then(|| f(name, num, V::E(x, label)))
}
fn msg(name: &'static str, num: u32, fields: Vec<Option<F>>) -> F {
    f(name, num, V::M(fields.into_iter().flatten().collect()))
}

/// `Name` with hashes from the strings and an explicit `name_id` (SLIM-NAME-004).
fn name(field: &'static str, num: u32, c: [&str; 3], id: u128) -> F {
    let comp = |name: &'static str, num: u32, x: u64| (x != 0).then(|| f(name, num, V::UHex(x)));
    let (id_0, id_1) = ((id >> 64) as u64, id as u64);
    msg(
        field,
        num,
        vec![
            Some(msg(
                "name",
                1,
                vec![
                    comp("component_0", 1, xxh64_component(c[0])),
                    comp("component_1", 2, xxh64_component(c[1])),
                    comp("component_2", 3, xxh64_component(c[2])),
                    Some(msg(
                        "name_id",
                        4,
                        vec![
                            (id_0 != 0).then(|| f("id_0", 1, V::UHex(id_0))),
                            (id_1 != 0).then(|| f("id_1", 2, V::UHex(id_1))),
                        ],
                    )),
                ],
            )),
            Some(msg(
                "str_name",
                2,
                vec![
                    s("str_component_0", 1, c[0]),
                    s("str_component_1", 2, c[1]),
                    s("str_component_2", 3, c[2]),
                ],
            )),
        ],
    )
}

const ALICE: ([&str; 3], u128) = (
    ["agntcy", "ns", "alice"],
    0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a,
);

/// A SLIMHeader. `opt` holds the optional fields recv_from, forward_to, incoming_conn, error.
struct Hdr {
    dst: ([&'static str; 3], u128),
    fanout: u32,
    ttl: u32,
    recv_from: Option<u64>,
    forward_to: Option<u64>,
    incoming_conn: Option<u64>,
    error: Option<bool>,
}

fn hdr(dst: ([&'static str; 3], u128), fanout: u32) -> Hdr {
    Hdr {
        dst,
        fanout,
        ttl: 8,
        recv_from: None,
        forward_to: None,
        incoming_conn: None,
        error: None,
    }
}

/// The header with a real MAC on the RFC 7748 link of link.yaml tc_id 1.
fn header(h: &Hdr) -> Result<F, VectorError> {
    let desc = crate::mac::HeaderDesc {
        source: Some(crate::mac::name_desc(ALICE.0, ALICE.1)),
        destination: Some(crate::mac::name_desc(h.dst.0, h.dst.1)),
        identity: String::new(),
        fanout: h.fanout,
        version: "3.4.6".into(),
        ttl: h.ttl,
        recv_from: h.recv_from,
        forward_to: h.forward_to,
        incoming_conn: h.incoming_conn,
        error: h.error,
        e2e_header_sig: None,
    };
    let tag = crate::mac::tag(&crate::link::rfc_link_key()?, crate::link::LINK_ID, &desc)?;
    Ok(msg(
        "header",
        1,
        vec![
            Some(name("source", 1, ALICE.0, ALICE.1)),
            Some(name("destination", 2, h.dst.0, h.dst.1)),
            u("fanout", 4, u64::from(h.fanout)),
            s("version", 5, "3.4.6"),
            u("ttl", 6, u64::from(h.ttl)),
            h.recv_from.map(|x| f("recv_from", 7, V::U(x))),
            h.forward_to.map(|x| f("forward_to", 8, V::U(x))),
            h.incoming_conn.map(|x| f("incoming_conn", 9, V::U(x))),
            h.error.map(|x| f("error", 10, V::B(x))),
            Some(f("header_mac", 11, V::Bytes(tag.to_vec()))),
        ],
    ))
}

fn session(message_type: i32, label: &'static str) -> F {
    msg(
        "session",
        2,
        vec![
            e("session_type", 1, 1, "SESSION_TYPE_POINT_TO_POINT"),
            e("session_message_type", 2, message_type, label),
            u("session_id", 3, 1),
            u("message_id", 4, 1),
        ],
    )
}

fn app_payload(payload_type: &str, blob: &[u8]) -> F {
    msg(
        "msg",
        3,
        vec![Some(msg(
            "app_payload",
            1,
            vec![
                s("payload_type", 1, payload_type),
                (!blob.is_empty()).then(|| f("blob", 2, V::Bytes(blob.to_vec()))),
            ],
        ))],
    )
}

fn top(kind: &'static str, num: u32, fields: Vec<Option<F>>) -> Vec<F> {
    vec![msg(kind, num, fields)]
}

fn negotiation(
    link_id: &str,
    is_reply: bool,
    key: &str,
    conn: (i32, &'static str),
    node_id: &str,
) -> Result<Vec<F>, VectorError> {
    let key = unhex("key", key).map_err(VectorError::SelfCheck)?;
    Ok(top(
        "link",
        5,
        vec![Some(msg(
            "link_negotiation",
            1,
            vec![
                s("link_id", 1, link_id),
                s("slim_version", 2, "3.4.6"),
                b("is_reply", 3, is_reply),
                Some(f("link_ecdh_public_key", 4, V::Bytes(key))),
                e("connection_type", 5, conn.0, conn.1),
                s("node_id", 6, node_id),
            ],
        ))],
    ))
}

const EDGE: (i32, &str) = (2, "LINK_CONNECTION_TYPE_EDGE");
const REMOTE: (i32, &str) = (0, "LINK_CONNECTION_TYPE_REMOTE");
const ALICE_PUB: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PUB: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";

struct Valid {
    comment: &'static str,
    kind: &'static str,
    fields: Vec<F>,
    metadata: Option<(&'static str, &'static str)>,
}

fn with_metadata(mut fields: Vec<F>, md: Option<(&'static str, &'static str)>) -> Vec<F> {
    if let Some((k, v)) = md {
        // map<string,string> metadata = 4: one entry message {key = 1, value = 2}. Field 4
        // sorts between publish (3) and link (5); canonical order is by field number.
        let entry = msg("metadata", 4, vec![s("key", 1, k), s("value", 2, v)]);
        fields.push(entry);
        fields.sort_by_key(|x| x.num);
    }
    fields
}

/// Builds the file.
pub fn build() -> Result<EncodingsFile, VectorError> {
    let app = (["org", "default", "app"], 0x42u128);
    let app_any = (["org", "default", "app"], WILDCARD);
    let sub_fields = |id: u64| -> Result<Vec<F>, VectorError> {
        Ok(top(
            "subscribe",
            1,
            vec![Some(header(&hdr(app, 1))?), u("subscription_id", 2, id)],
        ))
    };
    let publish_app = top(
        "publish",
        3,
        vec![
            Some(header(&hdr(app_any, 1))?),
            Some(session(1, "SESSION_MESSAGE_TYPE_MSG")),
            Some(app_payload("msg", b"hello")),
        ],
    );
    let valid = vec![
        Valid {
            comment: "link negotiation request: EDGE link, RFC 7748 Alice's key (link.yaml tc_id 1)",
            kind: "link",
            fields: negotiation(crate::link::LINK_ID, false, ALICE_PUB, EDGE, "")?,
            metadata: None,
        },
        Valid {
            comment: "link negotiation reply: is_reply, Bob's key, the node's node_id",
            kind: "link",
            fields: negotiation(crate::link::LINK_ID, true, BOB_PUB, EDGE, "slim/1")?,
            metadata: None,
        },
        Valid {
            comment: "link negotiation request: REMOTE (0) is the default and is not written",
            kind: "link",
            fields: negotiation("L", false, ALICE_PUB, REMOTE, "")?,
            metadata: None,
        },
        Valid {
            comment: "subscribe to org/default/app/<0x42> with subscription_id 7 (WIRE.md Appendix A), signed",
            kind: "subscribe",
            fields: sub_fields(7)?,
            metadata: None,
        },
        Valid {
            comment: "subscribe with subscription_id 0 (no ack wanted): the field is not written",
            kind: "subscribe",
            fields: sub_fields(0)?,
            metadata: None,
        },
        Valid {
            comment: "unsubscribe of the same name and id",
            kind: "unsubscribe",
            fields: top(
                "unsubscribe",
                2,
                vec![Some(header(&hdr(app, 1))?), u("subscription_id", 2, 7)],
            ),
            metadata: None,
        },
        Valid {
            comment: "anycast publish to the wildcard id with an app payload \"msg\"/\"hello\"",
            kind: "publish",
            fields: publish_app.clone(),
            metadata: None,
        },
        Valid {
            comment: "broadcast publish (fanout 256) with a command payload: an empty discovery_request",
            kind: "publish",
            fields: top(
                "publish",
                3,
                vec![
                    Some(header(&hdr(app_any, 256))?),
                    Some(session(5, "SESSION_MESSAGE_TYPE_DISCOVERY_REQUEST")),
                    Some(msg(
                        "msg",
                        3,
                        vec![Some(msg(
                            "command_payload",
                            2,
                            vec![Some(msg("discovery_request", 1, vec![]))],
                        ))],
                    )),
                ],
            ),
            metadata: None,
        },
        Valid {
            comment: "publish with one Message.metadata entry PUBLISH_TO = TRUE (field 4, after publish)",
            kind: "publish",
            fields: publish_app.clone(),
            metadata: Some(("PUBLISH_TO", "TRUE")),
        },
        Valid {
            comment: "publish without content: valid, only the session header is required (SLIM-VAL-004)",
            kind: "publish",
            fields: top(
                "publish",
                3,
                vec![
                    Some(header(&hdr(app, 1))?),
                    Some(session(1, "SESSION_MESSAGE_TYPE_MSG")),
                ],
            ),
            metadata: None,
        },
        Valid {
            comment: "publish with the optional header fields present at their zero values \
                      (recv_from, forward_to, incoming_conn 0, error false): presence is encoded",
            kind: "publish",
            fields: top(
                "publish",
                3,
                vec![
                    Some(header(&Hdr {
                        recv_from: Some(0),
                        forward_to: Some(0),
                        incoming_conn: Some(0),
                        error: Some(false),
                        ..hdr(app, 1)
                    })?),
                    Some(session(1, "SESSION_MESSAGE_TYPE_MSG")),
                    Some(app_payload("msg", b"")),
                ],
            ),
            metadata: None,
        },
        Valid {
            comment: "subscription ack, success",
            kind: "subscription_ack",
            fields: top(
                "subscription_ack",
                6,
                vec![u("subscription_id", 1, 7), b("success", 2, true)],
            ),
            metadata: None,
        },
        Valid {
            comment: "subscription ack, refused with the real node's error text (success false is not written)",
            kind: "subscription_ack",
            fields: top(
                "subscription_ack",
                6,
                vec![
                    u("subscription_id", 1, 9),
                    b("success", 2, false),
                    s("error", 3, "subscription not found"),
                ],
            ),
            metadata: None,
        },
    ];

    let mut vectors = Vec::new();
    let mut bytes_of = Vec::new();
    for v in valid {
        let fields = with_metadata(v.fields, v.metadata);
        let bytes = encode(&fields);
        vectors.push(EncodingVector {
            tc_id: vectors.len() as u32 + 1,
            comment: v.comment.into(),
            result: Outcome::Valid,
            reason: None,
            kind: Some(v.kind.into()),
            message: Some(describe(&fields)),
            hex: hx(&bytes),
            canonical_hex: None,
            error: None,
        });
        bytes_of.push(bytes);
    }
    let subscribe = bytes_of[3].clone();
    let publish = bytes_of[6].clone();
    let ack = bytes_of[11].clone();

    let mut invalid =
        |comment: &str, reason: &str, bytes: Vec<u8>, error: &str, message: Option<Value>| {
            vectors.push(EncodingVector {
                tc_id: vectors.len() as u32 + 1,
                comment: comment.into(),
                result: Outcome::Invalid,
                reason: Some(reason.into()),
                kind: None,
                message,
                hex: hx(&bytes),
                canonical_hex: None,
                error: Some(error.into()),
            });
        };
    invalid(
        "the anycast publish without its last byte",
        "truncated: a length-delimited field runs past the end of the buffer",
        publish[..publish.len() - 1].to_vec(),
        "decode",
        None,
    );
    invalid(
        "a subscribe whose header ends inside the varint of fanout",
        "truncated inside a varint: 0x80 has its continuation bit set and nothing follows",
        vec![0x0a, 0x04, 0x0a, 0x02, 0x20, 0x80],
        "decode",
        None,
    );
    invalid(
        "field 1 (subscribe) with wire type 0 (varint) instead of 2 (length-delimited)",
        "wrong wire type for a message field",
        vec![0x08, 0x01],
        "decode",
        None,
    );
    invalid(
        "subscription_ack whose length prefix claims 16 bytes but 5 follow",
        "length prefix past the end of the buffer",
        {
            let mut x = vec![0x32, 0x10];
            x.extend_from_slice(&ack[2..]);
            x
        },
        "decode",
        None,
    );
    invalid(
        "empty Message (zero bytes)",
        "no message_type (SLIM-VAL-001)",
        Vec::new(),
        "no_message_type",
        Some(Value::Mapping(Mapping::new())),
    );
    invalid(
        "a Message whose only field is 7, a oneof variant this protocol version does not define",
        "no message_type (SLIM-VAL-001): the unknown variant is skipped, leaving message_type unset",
        vec![0x3a, 0x00],
        "no_message_type",
        Some(Value::Mapping(Mapping::new())),
    );

    let mut acceptable =
        |comment: &str, reason: &str, bytes: Vec<u8>, canonical: &[u8], kind: &str| {
            vectors.push(EncodingVector {
                tc_id: vectors.len() as u32 + 1,
                comment: comment.into(),
                result: Outcome::Acceptable,
                reason: Some(reason.into()),
                kind: Some(kind.into()),
                message: None,
                hex: hx(&bytes),
                canonical_hex: Some(hx(canonical)),
                error: None,
            });
        };
    acceptable(
        "the subscribe (tc_id 4) with an unknown varint field 15 appended",
        "decoders must skip unknown fields; re-encoding drops it",
        [subscribe.as_slice(), &[0x78, 0x01]].concat(),
        &subscribe,
        "subscribe",
    );
    acceptable(
        "the subscription ack (tc_id 12) with its fields in reverse order",
        "protobuf decoders accept fields in any order; re-encoding sorts them",
        {
            // 32 len | 10 01 (success) | 08 07 (subscription_id)
            vec![0x32, 0x04, 0x10, 0x01, 0x08, 0x07]
        },
        &ack,
        "subscription_ack",
    );
    acceptable(
        "a subscription ack with success = false written explicitly",
        "a default value on the wire is legal but not canonical; re-encoding omits it",
        vec![0x32, 0x04, 0x08, 0x07, 0x10, 0x00],
        &[0x32, 0x02, 0x08, 0x07],
        "subscription_ack",
    );

    Ok(EncodingsFile {
        schema: SCHEMA,
        area: "encodings".into(),
        description: "Canonical protobuf encodings of dataplane.proto.v1.Message: fields in \
            field-number order, proto3 default scalars omitted, `optional` fields and present \
            sub-messages always written. Headers carry a real header_mac under the link key of \
            link.yaml tc_id 1 (RFC 7748 keys, link id 0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6a). In \
            `message`, u64 name hashes and ids are 0x-hex, bytes are hex, enums are NAME (number)."
            .into(),
        requirements: vec![
            "SLIM-TRANS-002".into(),
            "SLIM-VAL-001".into(),
            "SLIM-VAL-004".into(),
        ],
        generator: GENERATOR.into(),
        vectors,
    })
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Subscribe => "subscribe",
        Kind::Unsubscribe => "unsubscribe",
        Kind::Publish => "publish",
        Kind::Link => "link",
        Kind::SubscriptionAck => "subscription_ack",
    }
}

/// Checks slim-proto's generated types (prost decode and encode) and `validate` against every
/// vector.
pub fn verify(file: &EncodingsFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    let ids: Vec<u32> = file.vectors.iter().map(|v| v.tc_id).collect();
    r.check_header(file.schema, &file.area, &file.generator, &ids);
    for v in &file.vectors {
        match v.result {
            Outcome::Acceptable => match check_acceptable(v) {
                Ok(note) => r.note(v.tc_id, note),
                Err(e) => r.record(v.tc_id, Err(e)),
            },
            _ => r.record(v.tc_id, check(v)),
        }
    }
    r
}

fn check(v: &EncodingVector) -> Result<(), String> {
    let bytes = unhex("hex", &v.hex)?;
    let decoded = pb::Message::decode(bytes.as_slice());
    match v.result {
        Outcome::Valid => {
            let m = decoded.map_err(|e| format!("does not decode: {e}"))?;
            let again = m.encode_to_vec();
            if again != bytes {
                return Err(format!("re-encodes to {}, expected {}", hx(&again), v.hex));
            }
            let kind =
                validate::validate(&m).map_err(|e| format!("decoded message is invalid: {e}"))?;
            if let Some(k) = &v.kind {
                if k != kind_name(kind) {
                    return Err(format!("decodes as {}, expected {k}", kind_name(kind)));
                }
            }
            // Every routed header here is signed on the link of link.yaml tc_id 1 (SLIM-MAC-002).
            if let Some(h) = validate::header(&m) {
                let key = crate::link::rfc_link_key().map_err(|e| e.to_string())?;
                LinkMac::new(key, crate::link::LINK_ID)
                    .verify(h)
                    .map_err(|e| format!("header_mac does not verify: {e}"))?;
            }
            Ok(())
        }
        _ => match (v.error.as_deref(), decoded) {
            (Some("no_message_type"), Ok(m)) => match validate::validate(&m) {
                Err(ValidationError::NoMessageType) => Ok(()),
                other => Err(format!("validate gave {other:?}, expected NoMessageType")),
            },
            (Some("no_message_type"), Err(e)) => {
                Err(format!("does not decode ({e}); it is valid protobuf"))
            }
            (_, Ok(m)) => Err(format!("decoded as {m:?}; it must be refused")),
            (_, Err(_)) => Ok(()),
        },
    }
}

fn check_acceptable(v: &EncodingVector) -> Result<String, String> {
    let bytes = unhex("hex", &v.hex)?;
    match pb::Message::decode(bytes.as_slice()) {
        Err(e) => Ok(format!("refused by the decoder: {e}")),
        Ok(m) => {
            let canonical = v.canonical_hex.as_deref().ok_or("no canonical_hex")?;
            let again = hx(&m.encode_to_vec());
            if again != canonical {
                return Err(format!(
                    "accepted, but re-encodes to {again}, expected {canonical}"
                ));
            }
            Ok("accepted; re-encodes canonically".into())
        }
    }
}
