//! `mac.yaml`: the per-link header MAC (SLIM-MAC-002, SLIM-MAC-004).
//!
//! Each vector describes a `SLIMHeader` field by field, the link id and key, the exact preimage
//! and the HMAC-SHA256 tag. The generator writes the preimage itself from the layout in WIRE.md
//! §1.5 and computes the tag with the `hmac` crate; the verifier compares both with slim-proto's
//! `mac::preimage` and `LinkMac`. Vectors that change a covered field get a different tag; vectors
//! that change an uncovered field (`version`, `incoming_conn`, `e2e_header_sig`) say
//! `same_tag_as` the base vector.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use slim_proto::mac::{self as pm, LinkMac, MacError};
use slim_proto::pb;

use crate::common::{
    hx, hx64, unhex, unhex64, unhex_n, xxh64_component, FileReport, Outcome, GENERATOR, SCHEMA,
    WILDCARD,
};
use crate::VectorError;

/// File name.
pub const FILE: &str = "mac.yaml";

/// The contents of `mac.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacFile {
    /// Schema version (1).
    pub schema: u32,
    /// `mac`.
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Requirement ids pinned by the file.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// The vectors, tc_ids 1..n.
    pub vectors: Vec<MacVector>,
}

/// One header, its preimage and its tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises (which field differs from tc_id 1).
    pub comment: String,
    /// `valid`: `tag` is the header's MAC; `invalid`: `tag` (or its absence) must not verify.
    pub result: Outcome,
    /// Why an invalid tag is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The link id bound into the preimage.
    pub link_id: String,
    /// The 32-byte link MAC key, hex.
    pub key: String,
    /// The header, field by field.
    pub header: HeaderDesc,
    /// The exact bytes the MAC covers, hex.
    pub preimage: String,
    /// Valid: HMAC-SHA256(key, preimage). Invalid: the tag presented in `header_mac` (absent =
    /// no `header_mac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// For a change to a field the MAC does not cover: the tc_id whose tag this one equals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_tag_as: Option<u32>,
    /// For invalid vectors: `missing_tag`, `bad_tag_length` or `mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A `SLIMHeader` without `header_mac`. Absent optional fields are absent keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderDesc {
    /// `source` (absent = field unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<NameDesc>,
    /// `destination` (absent = field unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<NameDesc>,
    /// `identity`.
    pub identity: String,
    /// `fanout`.
    pub fanout: u32,
    /// `version` (not covered).
    pub version: String,
    /// `ttl`.
    pub ttl: u32,
    /// `recv_from` (optional field: absent and 0 differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_from: Option<u64>,
    /// `forward_to` (optional field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_to: Option<u64>,
    /// `incoming_conn` (optional field, not covered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_conn: Option<u64>,
    /// `error` (optional field: absent and false differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<bool>,
    /// `e2e_header_sig`, hex (optional field, not covered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_header_sig: Option<String>,
}

/// A `Name`: hashed form and string form, each possibly absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameDesc {
    /// `Name.name` (EncodedName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoded: Option<EncodedDesc>,
    /// `Name.str_name`: the three strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strings: Option<Vec<String>>,
}

/// An `EncodedName`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedDesc {
    /// `component_0`, 16 hex digits.
    pub component_0: String,
    /// `component_1`, 16 hex digits.
    pub component_1: String,
    /// `component_2`, 16 hex digits.
    pub component_2: String,
    /// `name_id` (absent = field unset, which routing reads as the wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id: Option<IdDesc>,
}

/// A `NameId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdDesc {
    /// `id_0` (high 64 bits), 16 hex digits.
    pub id_0: String,
    /// `id_1` (low 64 bits), 16 hex digits.
    pub id_1: String,
}

/// A full name with hashes computed from the strings (SLIM-NAME-004).
pub fn name_desc(c: [&str; 3], id: u128) -> NameDesc {
    NameDesc {
        encoded: Some(EncodedDesc {
            component_0: hx64(xxh64_component(c[0])),
            component_1: hx64(xxh64_component(c[1])),
            component_2: hx64(xxh64_component(c[2])),
            name_id: Some(IdDesc {
                id_0: hx64((id >> 64) as u64),
                id_1: hx64(id as u64),
            }),
        }),
        strings: Some(c.iter().map(|s| s.to_string()).collect()),
    }
}

/// The base header of tc_id 1: an SDK-like anycast publish header.
pub fn base_header() -> HeaderDesc {
    HeaderDesc {
        source: Some(name_desc(
            ["agntcy", "ns", "alice"],
            0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a,
        )),
        destination: Some(name_desc(["org", "default", "app"], WILDCARD)),
        identity: "token".into(),
        fanout: 1,
        version: "3.4.6".into(),
        ttl: 8,
        recv_from: None,
        forward_to: None,
        incoming_conn: None,
        error: None,
        e2e_header_sig: None,
    }
}

// ---- the preimage, written from WIRE.md §1.5 -----------------------------------------------

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0x00),
        Some(x) => {
            out.push(0x01);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn put_name(out: &mut Vec<u8>, n: Option<&NameDesc>) -> Result<(), String> {
    let Some(n) = n else {
        out.push(0x00);
        return Ok(());
    };
    out.push(0x01);
    match &n.encoded {
        None => out.push(0x00),
        Some(e) => {
            out.push(0x01);
            for (f, c) in [
                ("component_0", &e.component_0),
                ("component_1", &e.component_1),
                ("component_2", &e.component_2),
            ] {
                out.extend_from_slice(&unhex64(f, c)?.to_le_bytes());
            }
            match &e.name_id {
                None => out.push(0x00),
                Some(id) => {
                    out.push(0x01);
                    out.extend_from_slice(&unhex64("id_0", &id.id_0)?.to_le_bytes());
                    out.extend_from_slice(&unhex64("id_1", &id.id_1)?.to_le_bytes());
                }
            }
        }
    }
    match &n.strings {
        None => out.push(0x00),
        Some(s) => {
            out.push(0x01);
            if s.len() != 3 {
                return Err("strings must list 3 components".into());
            }
            for c in s {
                put_bytes(out, c.as_bytes());
            }
        }
    }
    Ok(())
}

/// The preimage of WIRE.md §1.5, written independently of slim-proto:
/// `"SLIM-DP-HDR-v1\0" || bytes(link_id) || name(src) || name(dst) || bytes(identity) ||
/// u32le(fanout) || opt_u64(recv_from) || opt_u64(forward_to) || opt_bool(error) || u32le(ttl)`.
pub fn preimage(h: &HeaderDesc, link_id: &str) -> Result<Vec<u8>, String> {
    let mut out = b"SLIM-DP-HDR-v1\0".to_vec();
    put_bytes(&mut out, link_id.as_bytes());
    put_name(&mut out, h.source.as_ref())?;
    put_name(&mut out, h.destination.as_ref())?;
    put_bytes(&mut out, h.identity.as_bytes());
    out.extend_from_slice(&h.fanout.to_le_bytes());
    put_opt_u64(&mut out, h.recv_from);
    put_opt_u64(&mut out, h.forward_to);
    match h.error {
        None => out.push(0x00),
        Some(b) => out.extend_from_slice(&[0x01, u8::from(b)]),
    }
    out.extend_from_slice(&h.ttl.to_le_bytes());
    Ok(out)
}

/// HMAC-SHA256 with the `hmac` crate.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], VectorError> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| VectorError::SelfCheck(format!("HMAC key: {e}")))?;
    m.update(data);
    Ok(m.finalize().into_bytes().into())
}

/// The tag of `header` on link `link_id` under `key`, computed without slim-proto.
pub fn tag(key: &[u8; 32], link_id: &str, header: &HeaderDesc) -> Result<[u8; 32], VectorError> {
    let p = preimage(header, link_id).map_err(VectorError::SelfCheck)?;
    hmac_sha256(key, &p)
}

/// Builds the file.
pub fn build() -> Result<MacFile, VectorError> {
    let key = crate::link::rfc_link_key()?;
    let link_id = crate::link::LINK_ID;
    let base = base_header();
    let mut vectors: Vec<MacVector> = Vec::new();
    let push = |vectors: &mut Vec<MacVector>,
                comment: &str,
                link_id: &str,
                key: [u8; 32],
                header: HeaderDesc,
                same_as_base: bool|
     -> Result<(), VectorError> {
        let tc_id = vectors.len() as u32 + 1;
        let p = preimage(&header, link_id).map_err(VectorError::SelfCheck)?;
        let t = hmac_sha256(&key, &p)?;
        if let Some(first) = vectors.first() {
            let differs = first.tag.as_deref() != Some(hx(&t).as_str());
            if differs == same_as_base {
                return Err(VectorError::SelfCheck(format!(
                    "tc_id {tc_id} ({comment}): tag {} the base tag",
                    if differs { "differs from" } else { "equals" }
                )));
            }
        }
        vectors.push(MacVector {
            tc_id,
            comment: comment.into(),
            result: Outcome::Valid,
            reason: None,
            link_id: link_id.into(),
            key: hx(&key),
            header,
            preimage: hx(&p),
            tag: Some(hx(&t)),
            same_tag_as: same_as_base.then_some(1).filter(|_| tc_id != 1),
            error: None,
        });
        Ok(())
    };
    let with = |f: &dyn Fn(&mut HeaderDesc)| {
        let mut h = base_header();
        f(&mut h);
        h
    };

    push(
        &mut vectors,
        "base: publish header from agntcy/ns/alice/<uuid> to org/default/app (wildcard), \
         fanout 1, ttl 8; key = link.yaml tc_id 1",
        link_id,
        key,
        base.clone(),
        true,
    )?;
    // Covered inputs: each change must change the tag (SLIM-MAC-002).
    let covered: Vec<(&str, String, [u8; 32], HeaderDesc)> = vec![
        ("covered: link id \"L\" instead of the UUID", "L".into(), key, base.clone()),
        ("covered: another key (32 × 0x01)", link_id.into(), [1; 32], base.clone()),
        (
            "covered: source id_1 + 1",
            link_id.into(),
            key,
            with(&|h| {
                h.source = Some(name_desc(
                    ["agntcy", "ns", "alice"],
                    0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6b,
                ))
            }),
        ),
        (
            "covered: destination str_component_2 \"app2\", hashes unchanged",
            link_id.into(),
            key,
            with(&|h| {
                if let Some(s) = h.destination.as_mut().and_then(|d| d.strings.as_mut()) {
                    s[2] = "app2".into();
                }
            }),
        ),
        (
            "covered: destination component_2 hash of \"app2\", strings unchanged",
            link_id.into(),
            key,
            with(&|h| {
                if let Some(e) = h.destination.as_mut().and_then(|d| d.encoded.as_mut()) {
                    e.component_2 = hx64(xxh64_component("app2"));
                }
            }),
        ),
        (
            "covered: destination name_id absent (routes like the wildcard, but is MAC'd differently)",
            link_id.into(),
            key,
            with(&|h| {
                if let Some(e) = h.destination.as_mut().and_then(|d| d.encoded.as_mut()) {
                    e.name_id = None;
                }
            }),
        ),
        (
            "covered: destination str_name absent",
            link_id.into(),
            key,
            with(&|h| {
                if let Some(d) = h.destination.as_mut() {
                    d.strings = None;
                }
            }),
        ),
        (
            "covered: destination hashed form absent",
            link_id.into(),
            key,
            with(&|h| {
                if let Some(d) = h.destination.as_mut() {
                    d.encoded = None;
                }
            }),
        ),
        ("covered: source absent", link_id.into(), key, with(&|h| h.source = None)),
        (
            "covered: identity \"token2\"",
            link_id.into(),
            key,
            with(&|h| h.identity = "token2".into()),
        ),
        ("covered: identity empty", link_id.into(), key, with(&|h| h.identity.clear())),
        ("covered: fanout 256", link_id.into(), key, with(&|h| h.fanout = 256)),
        ("covered: fanout 0", link_id.into(), key, with(&|h| h.fanout = 0)),
        (
            "covered: ttl 7 (a node re-signs after decrementing)",
            link_id.into(),
            key,
            with(&|h| h.ttl = 7),
        ),
        (
            "covered: recv_from present with value 0 (presence is covered)",
            link_id.into(),
            key,
            with(&|h| h.recv_from = Some(0)),
        ),
        (
            "covered: forward_to 3",
            link_id.into(),
            key,
            with(&|h| h.forward_to = Some(3)),
        ),
        (
            "covered: error present and false (presence is covered)",
            link_id.into(),
            key,
            with(&|h| h.error = Some(false)),
        ),
        ("covered: error true", link_id.into(), key, with(&|h| h.error = Some(true))),
        (
            "covered: every optional field set, non-ASCII names",
            link_id.into(),
            key,
            with(&|h| {
                h.source = Some(name_desc(["\u{e9}", "\u{1f980}", "日本語"], 0));
                h.recv_from = Some(u64::MAX);
                h.forward_to = Some(1);
                h.error = Some(true);
                h.fanout = u32::MAX;
                h.ttl = u32::MAX;
            }),
        ),
    ];
    for (comment, lid, k, h) in covered {
        push(&mut vectors, comment, &lid, k, h, false)?;
    }
    // Uncovered fields: the tag must stay the base tag (SLIM-MAC-002 "and nothing else").
    let uncovered: Vec<(&str, HeaderDesc)> = vec![
        (
            "not covered: version \"2.3.0\"",
            with(&|h| h.version = "2.3.0".into()),
        ),
        ("not covered: version empty", with(&|h| h.version.clear())),
        (
            "not covered: incoming_conn 5 (set by the receiving node)",
            with(&|h| h.incoming_conn = Some(5)),
        ),
        (
            "not covered: e2e_header_sig (end-to-end signature)",
            with(&|h| h.e2e_header_sig = Some(hx(&[0x30; 70]))),
        ),
    ];
    for (comment, h) in uncovered {
        push(&mut vectors, comment, link_id, key, h, true)?;
    }

    // Invalid tags on the base header (SLIM-MAC-004).
    let good = tag(&key, link_id, &base)?;
    let p = hx(&preimage(&base, link_id).map_err(VectorError::SelfCheck)?);
    let mut flip_first = good;
    flip_first[0] ^= 0x01;
    let mut flip_last = good;
    flip_last[31] ^= 0x80;
    let mut long = good.to_vec();
    long.push(0);
    let no_link_id = {
        // The tag of an implementation that leaves the link id out of the preimage.
        let mut q = b"SLIM-DP-HDR-v1\0".to_vec();
        let full = preimage(&base, link_id).map_err(VectorError::SelfCheck)?;
        q.extend_from_slice(&full[15 + 4 + link_id.len()..]);
        hmac_sha256(&key, &q)?
    };
    let invalid: Vec<(&str, &str, Option<Vec<u8>>, &str)> = vec![
        (
            "header_mac absent",
            "a node that requires the MAC refuses a header without one (SLIM-MAC-001, SLIM-MAC-004)",
            None,
            "missing_tag",
        ),
        (
            "tag truncated to 31 bytes",
            "a tag is exactly 32 bytes (SLIM-MAC-004)",
            Some(good[..31].to_vec()),
            "bad_tag_length",
        ),
        (
            "tag with a 33rd byte",
            "a tag is exactly 32 bytes (SLIM-MAC-004)",
            Some(long),
            "bad_tag_length",
        ),
        ("empty tag", "a tag is exactly 32 bytes (SLIM-MAC-004)", Some(Vec::new()), "bad_tag_length"),
        (
            "lowest bit of the first byte flipped",
            "the tag does not verify (SLIM-MAC-004)",
            Some(flip_first.to_vec()),
            "mismatch",
        ),
        (
            "highest bit of the last byte flipped",
            "the tag does not verify (SLIM-MAC-004)",
            Some(flip_last.to_vec()),
            "mismatch",
        ),
        (
            "tag over a preimage without the link id",
            "the link id is part of the preimage (SLIM-MAC-002)",
            Some(no_link_id.to_vec()),
            "mismatch",
        ),
        ("all-zero tag", "the tag does not verify (SLIM-MAC-004)", Some(vec![0; 32]), "mismatch"),
    ];
    for (comment, reason, t, error) in invalid {
        vectors.push(MacVector {
            tc_id: vectors.len() as u32 + 1,
            comment: comment.into(),
            result: Outcome::Invalid,
            reason: Some(reason.into()),
            link_id: link_id.into(),
            key: hx(&key),
            header: base.clone(),
            preimage: p.clone(),
            tag: t.map(|t| hx(&t)),
            same_tag_as: None,
            error: Some(error.into()),
        });
    }

    Ok(MacFile {
        schema: SCHEMA,
        area: "mac".into(),
        description: "Per-link header MAC: tag = HMAC-SHA256(link key, preimage), preimage = \
            \"SLIM-DP-HDR-v1\\0\" || u32le(len link_id) || link_id || name(source) || \
            name(destination) || u32le(len identity) || identity || u32le(fanout) || \
            opt_u64(recv_from) || opt_u64(forward_to) || opt_bool(error) || u32le(ttl), where \
            opt_x = 0x00 | 0x01 || x (u64le, or one byte 0/1), name = 0x00 | 0x01 || (0x00 | \
            0x01 || u64le c0 c1 c2 || (0x00 | 0x01 || u64le id_0 id_1)) || (0x00 | 0x01 || \
            u32le-length-prefixed s0 s1 s2). Not covered: version, incoming_conn, header_mac, \
            e2e_header_sig, the session header, the payload and Message.metadata. Hashes in \
            headers are 16 hex digits; a header field that is absent is an absent key."
            .into(),
        requirements: vec![
            "SLIM-MAC-001".into(),
            "SLIM-MAC-002".into(),
            "SLIM-MAC-004".into(),
        ],
        generator: GENERATOR.into(),
        vectors,
    })
}

fn name_to_pb(n: &NameDesc) -> Result<pb::Name, String> {
    let name = match &n.encoded {
        None => None,
        Some(e) => Some(pb::EncodedName {
            component_0: unhex64("component_0", &e.component_0)?,
            component_1: unhex64("component_1", &e.component_1)?,
            component_2: unhex64("component_2", &e.component_2)?,
            name_id: match &e.name_id {
                None => None,
                Some(id) => Some(pb::NameId {
                    id_0: unhex64("id_0", &id.id_0)?,
                    id_1: unhex64("id_1", &id.id_1)?,
                }),
            },
        }),
    };
    let str_name = match &n.strings {
        None => None,
        Some(s) => match s.as_slice() {
            [a, b, c] => Some(pb::StringName {
                str_component_0: a.clone(),
                str_component_1: b.clone(),
                str_component_2: c.clone(),
            }),
            _ => return Err("strings must list 3 components".into()),
        },
    };
    Ok(pb::Name { name, str_name })
}

/// The protobuf header a [`HeaderDesc`] describes (no `header_mac`).
pub fn header_to_pb(h: &HeaderDesc) -> Result<pb::SlimHeader, String> {
    Ok(pb::SlimHeader {
        source: h.source.as_ref().map(name_to_pb).transpose()?,
        destination: h.destination.as_ref().map(name_to_pb).transpose()?,
        identity: h.identity.clone(),
        fanout: h.fanout,
        version: h.version.clone(),
        ttl: h.ttl,
        recv_from: h.recv_from,
        forward_to: h.forward_to,
        incoming_conn: h.incoming_conn,
        error: h.error,
        header_mac: None,
        e2e_header_sig: h
            .e2e_header_sig
            .as_deref()
            .map(|s| unhex("e2e_header_sig", s))
            .transpose()?
            .map(Into::into),
    })
}

/// The error kind names used in `mac.yaml` for slim-proto's [`MacError`].
pub fn error_kind(e: &MacError) -> &'static str {
    match e {
        MacError::MissingTag => "missing_tag",
        MacError::BadTagLength(_) => "bad_tag_length",
        MacError::Mismatch => "mismatch",
    }
}

/// Checks slim-proto's `mac::preimage`, `LinkMac::tag` and `LinkMac::verify` against every
/// vector.
pub fn verify(file: &MacFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    let ids: Vec<u32> = file.vectors.iter().map(|v| v.tc_id).collect();
    r.check_header(file.schema, &file.area, &file.generator, &ids);
    for v in &file.vectors {
        r.record(v.tc_id, check(file, v));
    }
    r
}

fn check(file: &MacFile, v: &MacVector) -> Result<(), String> {
    let key = unhex_n::<32>("key", &v.key)?;
    let mut header = header_to_pb(&v.header)?;
    let got = pm::preimage(&header, &v.link_id);
    if hx(&got) != v.preimage {
        return Err(format!("preimage is {}, expected {}", hx(&got), v.preimage));
    }
    let mac = LinkMac::new(key, &v.link_id);
    header.header_mac = v
        .tag
        .as_deref()
        .map(|t| unhex("tag", t))
        .transpose()?
        .map(Into::into);
    match v.result {
        Outcome::Valid => {
            let want = v.tag.as_deref().ok_or("valid vector has no tag")?;
            let t = mac.tag(&header);
            if hx(&t) != want {
                return Err(format!("tag is {}, expected {want}", hx(&t)));
            }
            mac.verify(&header)
                .map_err(|e| format!("verify refused the expected tag: {e}"))?;
            if let Some(other) = v.same_tag_as {
                let o = file
                    .vectors
                    .iter()
                    .find(|x| x.tc_id == other)
                    .ok_or(format!("same_tag_as names unknown tc_id {other}"))?;
                if o.tag.as_deref() != Some(want) {
                    return Err(format!("tag differs from tc_id {other}'s"));
                }
            }
            Ok(())
        }
        Outcome::Invalid | Outcome::Acceptable => match mac.verify(&header) {
            Ok(()) => Err("verify accepted the tag; it must be refused".into()),
            Err(e) => match v.error.as_deref() {
                Some(kind) if kind != error_kind(&e) => Err(format!(
                    "refused as {} ({e}), expected {kind}",
                    error_kind(&e)
                )),
                _ => Ok(()),
            },
        },
    }
}
