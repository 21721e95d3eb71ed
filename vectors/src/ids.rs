//! `ids.yaml`: the 128-bit instance id, its wire halves and its text forms (SLIM-NAME-002/003).
//!
//! `ids` vectors tie an id to `id_0` (high 64 bits) and `id_1` (low 64 bits) and to the text the
//! real node prints (a hyphenated UUID, or `NULL_COMPONENT` for the all-ones wildcard). `parse`
//! vectors give a text and the id it denotes, or say it must be refused. The generator splits
//! and formats with plain integer arithmetic, not with slim-proto or the uuid crate.

use serde::{Deserialize, Serialize};
use slim_proto::names as pn;

use crate::common::{
    hx128, hx64, id_text, unhex128, unhex64, FileReport, Outcome, GENERATOR, SCHEMA, WILDCARD,
};
use crate::VectorError;

/// File name.
pub const FILE: &str = "ids.yaml";

/// The contents of `ids.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdsFile {
    /// Schema version (1).
    pub schema: u32,
    /// `ids`.
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Requirement ids pinned by the file.
    pub requirements: Vec<String>,
    /// `slim-vectors <version>`.
    pub generator: String,
    /// Id ↔ halves ↔ canonical text; tc_ids 1..k.
    pub ids: Vec<IdVector>,
    /// Text → id; tc_ids continue after `ids`.
    pub parse: Vec<ParseVector>,
}

/// One id in all its forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// Always `valid`.
    pub result: Outcome,
    /// Unused for valid vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The id as 32 hex digits.
    pub id_hex: String,
    /// The id in decimal (a string: 128-bit integers do not survive every YAML reader).
    pub id_decimal: String,
    /// `NameId.id_0`: the high 64 bits, 16 hex digits.
    pub id_0: String,
    /// `NameId.id_1`: the low 64 bits, 16 hex digits.
    pub id_1: String,
    /// The text the real node prints: hyphenated lowercase UUID, or `NULL_COMPONENT`.
    pub text: String,
    /// True for the all-ones id, the wildcard "no specific instance" (SLIM-NAME-003).
    pub wildcard: bool,
}

/// One text form of an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseVector {
    /// Vector number, unique in the file.
    pub tc_id: u32,
    /// What the vector exercises.
    pub comment: String,
    /// `valid`: denotes `id_hex`; `invalid`: must be refused; `acceptable`: a lenient parser
    /// may accept it (as `id_hex` when given).
    pub result: Outcome,
    /// Why the text is refused, or what leniency is at stake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The text.
    pub text: String,
    /// The id it denotes, 32 hex digits (absent for invalid vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_hex: Option<String>,
}

const IDS: &[(u128, &str)] = &[
    (0, "zero: an ordinary id, not the wildcard"),
    (1, "one"),
    (0x42, "WIRE.md Appendix A's subscriber id"),
    (u64::MAX as u128, "2^64 - 1: id_0 = 0, id_1 all ones"),
    (1 << 64, "2^64: id_0 = 1, id_1 = 0"),
    ((1 << 64) + 1, "2^64 + 1"),
    (1 << 127, "2^127: only the top bit"),
    (
        0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        "distinct halves show the order: id_0 is the high half",
    ),
    (
        0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a,
        "a UUID-looking value, as SDK ids look",
    ),
    (
        u128::MAX - 1,
        "2^128 - 2: one below the wildcard, an ordinary id",
    ),
    (WILDCARD, "all ones: the wildcard, printed NULL_COMPONENT"),
];

/// (text, id it denotes or None, outcome, comment/reason)
const PARSES: &[(&str, Option<u128>, Outcome, &str)] = &[
    (
        "NULL_COMPONENT",
        Some(WILDCARD),
        Outcome::Valid,
        "the wildcard's name",
    ),
    ("0", Some(0), Outcome::Valid, "decimal zero"),
    ("66", Some(0x42), Outcome::Valid, "decimal"),
    ("0x42", Some(0x42), Outcome::Valid, "0x-hex"),
    (
        "00000000-0000-0000-0000-000000000042",
        Some(0x42),
        Outcome::Valid,
        "hyphenated UUID",
    ),
    (
        "340282366920938463463374607431768211455",
        Some(WILDCARD),
        Outcome::Valid,
        "2^128 - 1 in decimal is the wildcard",
    ),
    (
        "0xffffffffffffffffffffffffffffffff",
        Some(WILDCARD),
        Outcome::Valid,
        "32 hex f's is the wildcard",
    ),
    (
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        Some(WILDCARD),
        Outcome::Valid,
        "the all-ones UUID is the wildcard",
    ),
    (
        "0X42",
        Some(0x42),
        Outcome::Acceptable,
        "upper-case 0X prefix: not a documented form, slim-proto accepts it",
    ),
    (
        "0B7C6F6E-2D3A-4D6C-9A3E-1F2E3D4C5B6A",
        Some(0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a),
        Outcome::Acceptable,
        "upper-case UUID: the real node prints lower case; parsers may accept either",
    ),
    (
        "0b7c6f6e2d3a4d6c9a3e1f2e3d4c5b6a",
        Some(0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a),
        Outcome::Acceptable,
        "UUID without hyphens: not a documented form",
    ),
    (
        "{0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6a}",
        Some(0x0b7c6f6e_2d3a_4d6c_9a3e_1f2e3d4c5b6a),
        Outcome::Acceptable,
        "braced UUID: not a documented form",
    ),
    (
        "0x+42",
        Some(0x42),
        Outcome::Acceptable,
        "a sign after 0x: not a documented form",
    ),
    ("", None, Outcome::Invalid, "empty"),
    (
        "zz",
        None,
        Outcome::Invalid,
        "not a number, UUID or NULL_COMPONENT",
    ),
    ("-1", None, Outcome::Invalid, "negative"),
    ("+1", None, Outcome::Invalid, "a sign is not a digit"),
    (" 1", None, Outcome::Invalid, "leading space"),
    ("1.5", None, Outcome::Invalid, "not an integer"),
    ("0x", None, Outcome::Invalid, "0x without digits"),
    (
        "0x1ffffffffffffffffffffffffffffffff",
        None,
        Outcome::Invalid,
        "33 hex digits: 2^129 - 1 does not fit in 128 bits",
    ),
    (
        "340282366920938463463374607431768211456",
        None,
        Outcome::Invalid,
        "2^128 does not fit in 128 bits",
    ),
    (
        "null_component",
        None,
        Outcome::Invalid,
        "NULL_COMPONENT is case-sensitive",
    ),
    (
        "0b7c6f6e-2d3a-4d6c-9a3e-1f2e3d4c5b6",
        None,
        Outcome::Invalid,
        "UUID one digit short",
    ),
];

/// Builds the file with plain integer arithmetic.
pub fn build() -> Result<IdsFile, VectorError> {
    let mut tc_id = 0;
    let mut ids = Vec::new();
    for (id, comment) in IDS {
        tc_id += 1;
        ids.push(IdVector {
            tc_id,
            comment: comment.to_string(),
            result: Outcome::Valid,
            reason: None,
            id_hex: hx128(*id),
            id_decimal: id.to_string(),
            id_0: hx64((id >> 64) as u64),
            id_1: hx64((id & u128::from(u64::MAX)) as u64),
            text: id_text(*id),
            wildcard: *id == WILDCARD,
        });
    }
    let mut parse = Vec::new();
    for (text, id, result, why) in PARSES {
        tc_id += 1;
        let (comment, reason) = match result {
            Outcome::Valid => (why.to_string(), None),
            _ => (format!("{text:?}"), Some(why.to_string())),
        };
        parse.push(ParseVector {
            tc_id,
            comment,
            result: *result,
            reason,
            text: text.to_string(),
            id_hex: id.map(hx128),
        });
    }
    Ok(IdsFile {
        schema: SCHEMA,
        area: "ids".into(),
        description: "128-bit instance ids: NameId.id_0 = high 64 bits, id_1 = low 64 bits; the \
            all-ones id is the wildcard (no specific instance) and prints as NULL_COMPONENT; any \
            other id prints as a hyphenated lowercase UUID. Accepted text forms: that UUID, a \
            decimal or 0x-hex integer below 2^128, NULL_COMPONENT. tc_ids number `ids` then \
            `parse`."
            .into(),
        requirements: vec!["SLIM-NAME-002".into(), "SLIM-NAME-003".into()],
        generator: GENERATOR.into(),
        ids,
        parse,
    })
}

/// Checks slim-proto's id functions (`split_id`, `join_id`, `id_text`, `parse_id`,
/// `encoded_id`) against every vector.
pub fn verify(file: &IdsFile) -> FileReport {
    let mut r = FileReport::new(FILE);
    let ids: Vec<u32> = file
        .ids
        .iter()
        .map(|v| v.tc_id)
        .chain(file.parse.iter().map(|v| v.tc_id))
        .collect();
    r.check_header(file.schema, &file.area, &file.generator, &ids);
    for v in &file.ids {
        r.record(v.tc_id, check_id(v));
    }
    for v in &file.parse {
        let got = pn::parse_id(&v.text);
        match v.result {
            Outcome::Acceptable => r.note(
                v.tc_id,
                match &got {
                    Ok(id) => format!("{:?} accepted as {id:032x}", v.text),
                    Err(_) => format!("{:?} refused", v.text),
                },
            ),
            Outcome::Valid => r.record(
                v.tc_id,
                (|| {
                    let want = unhex128("id_hex", v.id_hex.as_deref().ok_or("no id_hex")?)?;
                    match got {
                        Ok(id) if id == want => Ok(()),
                        Ok(id) => Err(format!(
                            "{:?} parsed as {id:032x}, expected {want:032x}",
                            v.text
                        )),
                        Err(e) => Err(format!("{:?} refused: {e}", v.text)),
                    }
                })(),
            ),
            Outcome::Invalid => r.record(
                v.tc_id,
                match got {
                    Ok(id) => Err(format!(
                        "{:?} accepted as {id:032x}; it must be refused",
                        v.text
                    )),
                    Err(_) => Ok(()),
                },
            ),
        }
    }
    r
}

fn check_id(v: &IdVector) -> Result<(), String> {
    let id = unhex128("id_hex", &v.id_hex)?;
    let id_0 = unhex64("id_0", &v.id_0)?;
    let id_1 = unhex64("id_1", &v.id_1)?;
    if v.id_decimal != id.to_string() {
        return Err(format!(
            "id_decimal {} is not id_hex {}",
            v.id_decimal, v.id_hex
        ));
    }
    if pn::split_id(id) != (id_0, id_1) {
        let (a, b) = pn::split_id(id);
        return Err(format!(
            "split_id = {a:016x}/{b:016x}, expected {}/{}",
            v.id_0, v.id_1
        ));
    }
    if pn::join_id(id_0, id_1) != id {
        return Err(format!(
            "join_id({}, {}) = {:032x}",
            v.id_0,
            v.id_1,
            pn::join_id(id_0, id_1)
        ));
    }
    if pn::id_text(id) != v.text {
        return Err(format!(
            "id_text = {:?}, expected {:?}",
            pn::id_text(id),
            v.text
        ));
    }
    for text in [
        v.text.clone(),
        v.id_decimal.clone(),
        format!("0x{}", v.id_hex),
    ] {
        match pn::parse_id(&text) {
            Ok(x) if x == id => {}
            Ok(x) => {
                return Err(format!(
                    "parse_id({text:?}) = {x:032x}, expected {}",
                    v.id_hex
                ))
            }
            Err(e) => return Err(format!("parse_id({text:?}) refused: {e}")),
        }
    }
    if (id == pn::NULL_ID) != v.wildcard {
        return Err(format!(
            "wildcard is {}, but NULL_ID comparison says otherwise",
            v.wildcard
        ));
    }
    let encoded = slim_proto::pb::EncodedName {
        name_id: Some(slim_proto::pb::NameId { id_0, id_1 }),
        ..Default::default()
    };
    if pn::encoded_id(&encoded) != id {
        return Err("encoded_id of the NameId differs".into());
    }
    Ok(())
}
