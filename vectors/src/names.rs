//! `names.yaml`: component hashing and the text form of full names (SLIM-NAME-001..003).
//!
//! Component vectors give a string, its UTF-8 bytes and its hash, computed here as
//! XXH64(seed 0, UTF-8 || 0xFF) with `xxhash-rust` directly. The seven values listed in WIRE.md
//! §2.1 (checked against the real SLIM) are included verbatim and the generator refuses to run if
//! its own computation disagrees with them.
//!
//! Name vectors give a text form (`org/ns/svc` or `org/ns/svc/<id>`) and the three hashes, the id
//! halves and the canonical text; invalid ones name the parse error.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use slim_proto::names::{self as pn, NameError, SlimName};

use crate::common::{
    hx, hx64, id_text, unhex, unhex64, xxh64_component, FileReport, Outcome, GENERATOR, SCHEMA,
    WILDCARD,
};
use crate::VectorError;

/// File name.
pub const FILE: &str = "names.yaml";

/// The contents of `names.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesFile {
    /// Schema version (1).
    pub schema: u32,
    /// `names`.
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Requirement ids pinned by the file.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// One string component each; tc_ids 1..k.
    pub components: Vec<ComponentVector>,
    /// Full names in text form; tc_ids continue after the components.
    pub names: Vec<NameVector>,
}

/// One component and its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// `valid`: `hash` is the component's hash; `invalid`: `hash` is a wrong hash that an
    /// implementation must not produce.
    pub result: Outcome,
    /// Why an invalid vector is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The component string.
    pub component: String,
    /// Its UTF-8 bytes (without the 0xFF terminator), hex.
    pub utf8_hex: String,
    /// The hash as 16 hex digits.
    pub hash: String,
    /// The same hash in decimal (a string, so that 64-bit values survive any YAML reader).
    pub hash_decimal: String,
}

/// One full name in text form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// `valid`: parses to the given hashes and id; `invalid`: must be refused.
    pub result: Outcome,
    /// Why an invalid vector is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The text form.
    pub text: String,
    /// The three string components (valid only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    /// The three component hashes, 16 hex digits each (valid only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<Vec<String>>,
    /// High 64 bits of the id, 16 hex digits (valid only; all `f` = wildcard).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_0: Option<String>,
    /// Low 64 bits of the id, 16 hex digits (valid only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_1: Option<String>,
    /// The canonical text form: no id part for the wildcard, otherwise a hyphenated UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
    /// For invalid vectors: `wrong_part_count`, `empty_component` or `bad_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// WIRE.md §2.1, verbatim: component hashes computed by the real SLIM's hashing code.
const KNOWN: &[(&str, u64)] = &[
    ("org", 0x873e580376ea963b),
    ("default", 0x219303c7c93f9668),
    ("app", 0x86cb542776a5f6d5),
    ("agntcy", 0x169ca82eb17d6bc2),
    ("ns", 0xeef9769a4c6990d1),
    ("alice", 0x7b90bc8fa5b6b182),
    ("", 0x95634172a60b7544),
];

/// Further components: (string, comment).
fn more_components() -> Vec<(String, String)> {
    let c = |s: &str, why: &str| (s.to_string(), why.to_string());
    vec![
        c("svc", "ASCII, 3 bytes"),
        c("A", "one upper-case letter (hashing is case-sensitive)"),
        c("a", "one lower-case letter"),
        c("0", "a digit"),
        c(" ", "a single space (no trimming)"),
        c(
            "NULL_COMPONENT",
            "the wildcard's text is an ordinary component string",
        ),
        c(
            "org/ns",
            "contains '/': hashing does not care, only the text form does",
        ),
        c("/", "just '/'"),
        c("\u{e9}", "é as one code point U+00E9 (UTF-8 c3 a9)"),
        c(
            "e\u{301}",
            "é decomposed as e + U+0301: no Unicode normalisation, so a different hash",
        ),
        c(
            "\u{ff}",
            "ÿ U+00FF: its UTF-8 (c3 bf) has no 0xFF byte; UTF-8 never does",
        ),
        c("\u{1f980}", "an emoji (4-byte UTF-8)"),
        c("日本語", "CJK (3-byte UTF-8 each)"),
        c("a\u{0}b", "an embedded NUL"),
        c(
            &"x".repeat(31),
            "31 bytes: with the terminator exactly one 32-byte XXH64 stripe",
        ),
        c(&"x".repeat(32), "32 bytes: the terminator starts the tail"),
        c(&"x".repeat(1024), "1 KiB of ASCII"),
        c(
            &"\u{e9}".repeat(512),
            "1 KiB of 2-byte UTF-8 (512 × U+00E9)",
        ),
    ]
}

/// A valid full name: (text, hand-written expected id, comment).
const NAMES: &[(&str, u128, &str)] = &[
    (
        "org/default/app",
        WILDCARD,
        "no id part: the wildcard id (SLIM-NAME-003)",
    ),
    (
        "org/default/app/66",
        0x42,
        "decimal id 66 = 0x42 (WIRE.md Appendix A's subscribe)",
    ),
    ("org/default/app/0x42", 0x42, "0x-hex id"),
    (
        "org/default/app/00000000-0000-0000-0000-000000000042",
        0x42,
        "UUID id, already canonical",
    ),
    (
        "org/default/app/NULL_COMPONENT",
        WILDCARD,
        "the wildcard spelled out; canonical text drops it",
    ),
    (
        "org/default/app/340282366920938463463374607431768211455",
        WILDCARD,
        "2^128 - 1 in decimal is the wildcard",
    ),
    (
        "org/ns/svc/0",
        0,
        "id 0 is an ordinary id, not the wildcard",
    ),
    (
        "agntcy/ns/alice/0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6a",
        0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a,
        "UUID-looking id (id_0 = first 8 bytes, id_1 = last 8 bytes)",
    ),
    (
        "org/ns/svc/18446744073709551616",
        1 << 64,
        "id 2^64: id_0 = 1, id_1 = 0 (SLIM-NAME-002)",
    ),
    ("\u{e9}/\u{1f980}/日本語/1", 1, "non-ASCII components"),
    ("a b/ns/svc", WILDCARD, "a space inside a component is kept"),
];

/// An invalid full name: (text, error kind, reason).
const BAD_NAMES: &[(&str, &str, &str)] = &[
    ("org/ns", "wrong_part_count", "2 parts; a name has 3 or 4"),
    ("org", "wrong_part_count", "1 part"),
    ("", "wrong_part_count", "empty text is 1 empty part"),
    (
        "org/ns/svc/1/2",
        "wrong_part_count",
        "5 parts ('/' cannot appear in a component of the text form)",
    ),
    ("org//svc", "empty_component", "empty namespace"),
    ("/ns/svc", "empty_component", "empty org"),
    ("org/ns/", "empty_component", "empty service"),
    ("org/ns//1", "empty_component", "empty service with an id"),
    ("org/ns/svc/", "bad_id", "empty id part"),
    (
        "org/ns/svc/zz",
        "bad_id",
        "not a number, UUID or NULL_COMPONENT",
    ),
    ("org/ns/svc/-1", "bad_id", "negative"),
    (
        "org/ns/svc/null_component",
        "bad_id",
        "NULL_COMPONENT is case-sensitive",
    ),
    (
        "org/ns/svc/340282366920938463463374607431768211456",
        "bad_id",
        "2^128 does not fit in 128 bits",
    ),
    ("org/ns/svc/0x", "bad_id", "0x without digits"),
];

/// Builds the file from the inputs above, with hashes computed by `xxhash-rust` directly.
pub fn build() -> Result<NamesFile, VectorError> {
    let mut components = Vec::new();
    let mut tc_id = 0;
    for (s, known) in KNOWN {
        let h = xxh64_component(s);
        if h != *known {
            return Err(VectorError::SelfCheck(format!(
                "XXH64({s:?} || 0xFF) = {h:016x}, WIRE.md §2.1 says {known:016x}"
            )));
        }
        tc_id += 1;
        components.push(component_vector(
            tc_id,
            s,
            *known,
            Outcome::Valid,
            format!("{s:?}: known value from WIRE.md §2.1, checked against the real SLIM"),
            None,
        ));
    }
    for (s, why) in more_components() {
        tc_id += 1;
        let h = xxh64_component(&s);
        components.push(component_vector(tc_id, &s, h, Outcome::Valid, why, None));
    }
    // The classic mistake: hashing without the 0xFF terminator (WIRE.md §2.1).
    tc_id += 1;
    let plain = xxhash_rust::xxh64::xxh64(b"org", 0);
    if plain != 0xc38126cd35e92b15 {
        return Err(VectorError::SelfCheck(format!(
            "plain XXH64(\"org\") = {plain:016x}, WIRE.md §2.1 says c38126cd35e92b15"
        )));
    }
    components.push(component_vector(
        tc_id,
        "org",
        plain,
        Outcome::Invalid,
        "\"org\" hashed without the 0xFF terminator".into(),
        Some(
            "plain XXH64 of the bytes omits the 0xFF terminator that SLIM appends (SLIM-NAME-001)"
                .into(),
        ),
    ));

    let mut names = Vec::new();
    for (text, id, why) in NAMES {
        tc_id += 1;
        let parts: Vec<&str> = text.split('/').collect();
        let comps: Vec<String> = parts[..3].iter().map(|s| s.to_string()).collect();
        let hashes = comps.iter().map(|c| hx64(xxh64_component(c))).collect();
        let canonical = if *id == WILDCARD {
            comps.join("/")
        } else {
            format!("{}/{}", comps.join("/"), id_text(*id))
        };
        names.push(NameVector {
            tc_id,
            comment: why.to_string(),
            result: Outcome::Valid,
            reason: None,
            text: text.to_string(),
            components: Some(comps),
            hashes: Some(hashes),
            id_0: Some(hx64((id >> 64) as u64)),
            id_1: Some(hx64(*id as u64)),
            canonical: Some(canonical),
            error: None,
        });
    }
    for (text, error, reason) in BAD_NAMES {
        tc_id += 1;
        names.push(NameVector {
            tc_id,
            comment: format!("{text:?} is not a name"),
            result: Outcome::Invalid,
            reason: Some(reason.to_string()),
            text: text.to_string(),
            components: None,
            hashes: None,
            id_0: None,
            id_1: None,
            canonical: None,
            error: Some(error.to_string()),
        });
    }

    Ok(NamesFile {
        schema: SCHEMA,
        area: "names".into(),
        description: "Name component hashing, XXH64(seed 0, UTF-8 bytes || 0xFF) as u64, and the \
            text form of full names org/ns/svc[/id] (id: hyphenated UUID, decimal, 0x-hex or \
            NULL_COMPONENT; absent or NULL_COMPONENT = the all-ones wildcard id). tc_ids number \
            `components` then `names`."
            .into(),
        requirements: vec![
            "SLIM-NAME-001".into(),
            "SLIM-NAME-002".into(),
            "SLIM-NAME-003".into(),
        ],
        generator: GENERATOR.into(),
        components,
        names,
    })
}

fn component_vector(
    tc_id: u32,
    s: &str,
    hash: u64,
    result: Outcome,
    comment: String,
    reason: Option<String>,
) -> ComponentVector {
    ComponentVector {
        tc_id,
        comment,
        result,
        reason,
        component: s.to_string(),
        utf8_hex: hx(s.as_bytes()),
        hash: hx64(hash),
        hash_decimal: hash.to_string(),
    }
}

/// The error kind names used in `names.yaml` for slim-proto's [`NameError`].
pub fn error_kind(e: &NameError) -> &'static str {
    match e {
        NameError::WrongPartCount(_) => "wrong_part_count",
        NameError::EmptyComponent(_) => "empty_component",
        NameError::BadId(_) => "bad_id",
        NameError::MissingEncoded => "missing_encoded",
        NameError::MissingStrings => "missing_strings",
    }
}

/// Checks slim-proto's `names` module against every vector.
pub fn verify(file: &NamesFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    let ids: Vec<u32> = file
        .components
        .iter()
        .map(|v| v.tc_id)
        .chain(file.names.iter().map(|v| v.tc_id))
        .collect();
    r.check_header(file.schema, &file.area, &file.generator, &ids);
    for v in &file.components {
        r.record(v.tc_id, check_component(v));
    }
    for v in &file.names {
        r.record(v.tc_id, check_name(v));
    }
    r
}

fn check_component(v: &ComponentVector) -> Result<(), String> {
    let utf8 = unhex("utf8_hex", &v.utf8_hex)?;
    if utf8 != v.component.as_bytes() {
        return Err("utf8_hex is not the component's UTF-8".into());
    }
    let want = unhex64("hash", &v.hash)?;
    if v.hash_decimal != want.to_string() {
        return Err(format!(
            "hash_decimal {} is not hash {}",
            v.hash_decimal, v.hash
        ));
    }
    let got = pn::hash_component(&v.component);
    match v.result {
        Outcome::Valid if got != want => Err(format!(
            "hash_component({:?}) = {got:016x}, expected {}",
            v.component, v.hash
        )),
        Outcome::Invalid | Outcome::Acceptable if got == want => Err(format!(
            "hash_component({:?}) produced the wrong hash {}",
            v.component, v.hash
        )),
        _ => Ok(()),
    }
}

fn check_name(v: &NameVector) -> Result<(), String> {
    let parsed = SlimName::from_str(&v.text);
    match v.result {
        Outcome::Valid => {
            let name = parsed.map_err(|e| format!("{:?} did not parse: {e}", v.text))?;
            let comps = v
                .components
                .as_deref()
                .ok_or("valid vector has no components")?;
            let got: Vec<&str> = name.components().to_vec();
            if got != comps.iter().map(String::as_str).collect::<Vec<_>>() {
                return Err(format!("components {got:?}, expected {comps:?}"));
            }
            let hashes = v.hashes.as_deref().ok_or("valid vector has no hashes")?;
            if hashes.len() != 3 {
                return Err("hashes must list 3 values".into());
            }
            for (i, (h, want)) in name.hashes().iter().zip(hashes).enumerate() {
                if *h != unhex64("hashes", want)? {
                    return Err(format!("component_{i} hash {h:016x}, expected {want}"));
                }
            }
            let id_0 = unhex64("id_0", v.id_0.as_deref().ok_or("no id_0")?)?;
            let id_1 = unhex64("id_1", v.id_1.as_deref().ok_or("no id_1")?)?;
            if pn::split_id(name.id()) != (id_0, id_1) {
                let (a, b) = pn::split_id(name.id());
                return Err(format!(
                    "id halves {a:016x}/{b:016x}, expected {id_0:016x}/{id_1:016x}"
                ));
            }
            let wire = name.to_proto();
            let enc = wire.name.as_ref().ok_or("to_proto has no encoded name")?;
            if pn::encoded_id(enc) != pn::join_id(id_0, id_1) {
                return Err("to_proto carries another id".into());
            }
            let canonical = v.canonical.as_deref().ok_or("no canonical")?;
            if name.to_string() != canonical {
                return Err(format!(
                    "text form {:?}, expected {canonical:?}",
                    name.to_string()
                ));
            }
            Ok(())
        }
        Outcome::Invalid => match parsed {
            Ok(n) => Err(format!("{:?} parsed as {n}; it must be refused", v.text)),
            Err(e) => match &v.error {
                Some(kind) if kind != error_kind(&e) => Err(format!(
                    "refused as {} ({e}), expected {kind}",
                    error_kind(&e)
                )),
                _ => Ok(()),
            },
        },
        Outcome::Acceptable => Ok(()),
    }
}
