//! SLIM names: three string components plus a 128-bit instance id.
//!
//! On the wire a [`pb::Name`] carries both a hashed form ([`pb::EncodedName`], used for routing,
//! SLIM-NAME-001) and the strings ([`pb::StringName`], used by the header MAC and by humans).
//!
//! - Each component is hashed as the real implementation does: XXH64 with seed 0 over the UTF-8
//!   bytes followed by one `0xFF` byte (that is how Rust's `Hash for str` feeds a hasher).
//! - The id is a `u128` split into `id_0` (high 64 bits) and `id_1` (low 64 bits).
//! - The all-ones id [`NULL_ID`] means "no id": a wildcard when publishing (SLIM-NAME-003).
//! - Text form: `org/ns/svc` (wildcard) or `org/ns/svc/<id>`, where `<id>` is displayed as a
//!   hyphenated UUID (as the real node logs it) and parsed from a UUID, a decimal integer, a
//!   `0x` hex integer or `NULL_COMPONENT`.

use std::fmt;
use std::str::FromStr;

use crate::pb;

/// The all-ones id: "no specific instance" (SLIM-NAME-003).
pub const NULL_ID: u128 = u128::MAX;

/// How the real node prints [`NULL_ID`] (in logs and in SubscriptionAck errors).
pub const NULL_ID_TEXT: &str = "NULL_COMPONENT";

/// Hashes one name component: XXH64(seed 0, UTF-8 bytes || 0xFF) (SLIM-NAME-001).
pub fn hash_component(component: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    hasher.update(component.as_bytes());
    hasher.update(&[0xFF]);
    hasher.digest()
}

/// Splits a 128-bit id into the wire's `(id_0, id_1)` = (high, low) halves (SLIM-NAME-002).
pub fn split_id(id: u128) -> (u64, u64) {
    ((id >> 64) as u64, id as u64)
}

/// Joins the wire's `(id_0, id_1)` halves into the 128-bit id (SLIM-NAME-002).
pub fn join_id(id_0: u64, id_1: u64) -> u128 {
    (u128::from(id_0) << 64) | u128::from(id_1)
}

/// The id of an encoded name, with an absent `name_id` read as [`NULL_ID`] (SLIM-NAME-003).
pub fn encoded_id(encoded: &pb::EncodedName) -> u128 {
    encoded
        .name_id
        .as_ref()
        .map_or(NULL_ID, |n| join_id(n.id_0, n.id_1))
}

/// Text of an id as the real node prints it: a hyphenated UUID, or `NULL_COMPONENT`.
pub fn id_text(id: u128) -> String {
    if id == NULL_ID {
        NULL_ID_TEXT.to_string()
    } else {
        uuid::Uuid::from_u128(id).hyphenated().to_string()
    }
}

/// Why a name could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The text did not have 3 or 4 `/`-separated parts.
    #[error("name `{0}` must be `org/namespace/service` or `org/namespace/service/id` (3 or 4 parts separated by `/`)")]
    WrongPartCount(String),
    /// One of the three string components is empty.
    #[error("name `{0}` has an empty component; every component needs at least one character")]
    EmptyComponent(String),
    /// The id part is not a UUID, a decimal or `0x` hex integer, or `NULL_COMPONENT`.
    #[error("id `{0}` is not a UUID, a decimal or 0x-hex integer below 2^128, or NULL_COMPONENT")]
    BadId(String),
    /// A wire name lacks its hashed form.
    #[error("name has no encoded (hashed) form")]
    MissingEncoded,
    /// A wire name lacks its string form.
    #[error("name has no string form (str_name)")]
    MissingStrings,
}

/// A SLIM name with its strings: `org/namespace/service` plus an instance id.
/// Ordered by components, then id, so names can key ordered maps (per-peer session state).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlimName {
    components: [String; 3],
    id: u128,
}

impl SlimName {
    /// A name with no specific instance (id [`NULL_ID`]).
    pub fn new(org: &str, namespace: &str, service: &str) -> Self {
        Self {
            components: [org.to_string(), namespace.to_string(), service.to_string()],
            id: NULL_ID,
        }
    }

    /// The same name with instance id `id`.
    pub fn with_id(mut self, id: u128) -> Self {
        self.id = id;
        self
    }

    /// The three string components.
    pub fn components(&self) -> [&str; 3] {
        [
            &self.components[0],
            &self.components[1],
            &self.components[2],
        ]
    }

    /// The instance id ([`NULL_ID`] when none).
    pub fn id(&self) -> u128 {
        self.id
    }

    /// The three hashed components (SLIM-NAME-001).
    pub fn hashes(&self) -> [u64; 3] {
        self.components.each_ref().map(|c| hash_component(c))
    }

    /// The wire form, with both the hashed and the string form and an explicit `name_id`.
    pub fn to_proto(&self) -> pb::Name {
        let [c0, c1, c2] = self.hashes();
        let (id_0, id_1) = split_id(self.id);
        pb::Name {
            name: Some(pb::EncodedName {
                component_0: c0,
                component_1: c1,
                component_2: c2,
                name_id: Some(pb::NameId { id_0, id_1 }),
            }),
            str_name: Some(pb::StringName {
                str_component_0: self.components[0].clone(),
                str_component_1: self.components[1].clone(),
                str_component_2: self.components[2].clone(),
            }),
        }
    }

    /// Reads a wire name that has its string form. The hashes are taken from the strings;
    /// the id from `name_id` (absent means [`NULL_ID`]).
    pub fn from_proto(name: &pb::Name) -> Result<Self, NameError> {
        let encoded = name.name.as_ref().ok_or(NameError::MissingEncoded)?;
        let strings = name.str_name.as_ref().ok_or(NameError::MissingStrings)?;
        Ok(Self {
            components: [
                strings.str_component_0.clone(),
                strings.str_component_1.clone(),
                strings.str_component_2.clone(),
            ],
            id: encoded_id(encoded),
        })
    }
}

impl fmt::Display for SlimName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.components();
        write!(f, "{a}/{b}/{c}")?;
        if self.id != NULL_ID {
            write!(f, "/{}", id_text(self.id))?;
        }
        Ok(())
    }
}

/// Parses an id in any accepted text form.
pub fn parse_id(text: &str) -> Result<u128, NameError> {
    if text == NULL_ID_TEXT {
        return Ok(NULL_ID);
    }
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u128::from_str_radix(hex, 16).map_err(|_| NameError::BadId(text.to_string()));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u128>()
            .map_err(|_| NameError::BadId(text.to_string()));
    }
    uuid::Uuid::try_parse(text)
        .map(|u| u.as_u128())
        .map_err(|_| NameError::BadId(text.to_string()))
}

impl FromStr for SlimName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(NameError::WrongPartCount(text.to_string()));
        }
        if parts[..3].iter().any(|p| p.is_empty()) {
            return Err(NameError::EmptyComponent(text.to_string()));
        }
        let name = SlimName::new(parts[0], parts[1], parts[2]);
        match parts.get(3) {
            None => Ok(name),
            Some(id) => Ok(name.with_id(parse_id(id)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Known values, computed by the real implementation's hashing (WIRE.md §2.1).
    #[test]
    fn component_hashes_match_real_slim() {
        let known: [(&str, u64); 7] = [
            ("org", 0x873e580376ea963b),
            ("default", 0x219303c7c93f9668),
            ("app", 0x86cb542776a5f6d5),
            ("agntcy", 0x169ca82eb17d6bc2),
            ("ns", 0xeef9769a4c6990d1),
            ("alice", 0x7b90bc8fa5b6b182),
            ("", 0x95634172a60b7544),
        ];
        for (s, h) in known {
            assert_eq!(hash_component(s), h, "hash of {s:?}");
        }
    }

    #[test]
    fn trailing_ff_is_not_omitted() {
        // Plain XXH64("org") differs: the 0xFF terminator is part of the hashed bytes.
        assert_eq!(xxhash_rust::xxh64::xxh64(b"org", 0), 0xc38126cd35e92b15);
        assert_ne!(hash_component("org"), 0xc38126cd35e92b15);
    }

    #[test]
    fn id_split_is_high_then_low() {
        assert_eq!(split_id(0x42), (0, 0x42));
        assert_eq!(split_id(1 << 64), (1, 0));
        assert_eq!(split_id(NULL_ID), (u64::MAX, u64::MAX));
        let wire = SlimName::new("org", "default", "app")
            .with_id(0x42)
            .to_proto();
        let id = wire.name.and_then(|n| n.name_id).expect("name_id");
        assert_eq!((id.id_0, id.id_1), (0, 0x42));
    }

    #[test]
    fn absent_name_id_is_the_wildcard() {
        let encoded = pb::EncodedName::default();
        assert_eq!(encoded_id(&encoded), NULL_ID);
    }

    #[test]
    fn text_forms() {
        let n: SlimName = "org/default/app".parse().expect("parse");
        assert_eq!(n.id(), NULL_ID);
        assert_eq!(n.to_string(), "org/default/app");
        let n: SlimName = "org/default/app/66".parse().expect("parse");
        assert_eq!(n.id(), 66);
        assert_eq!(
            n.to_string(),
            "org/default/app/00000000-0000-0000-0000-000000000042"
        );
        let n: SlimName = "org/default/app/0x42".parse().expect("parse");
        assert_eq!(n.id(), 0x42);
        let n: SlimName = "org/default/app/NULL_COMPONENT".parse().expect("parse");
        assert_eq!(n.id(), NULL_ID);
        assert_eq!(id_text(NULL_ID), "NULL_COMPONENT");
    }

    #[test]
    fn bad_text_forms_are_explained() {
        assert!(matches!(
            "org/app".parse::<SlimName>(),
            Err(NameError::WrongPartCount(_))
        ));
        assert!(matches!(
            "a/b/c/d/e".parse::<SlimName>(),
            Err(NameError::WrongPartCount(_))
        ));
        assert!(matches!(
            "org//app".parse::<SlimName>(),
            Err(NameError::EmptyComponent(_))
        ));
        assert!(matches!(
            "org/ns/app/zz".parse::<SlimName>(),
            Err(NameError::BadId(_))
        ));
        let msg = "org/app".parse::<SlimName>().unwrap_err().to_string();
        assert!(msg.contains("org/namespace/service"), "{msg}");
    }

    fn component() -> impl Strategy<Value = String> {
        "[^/]{1,24}"
    }

    proptest! {
        #[test]
        fn text_round_trip(a in component(), b in component(), c in component(), id in any::<u128>()) {
            let name = SlimName::new(&a, &b, &c).with_id(id);
            let back: SlimName = name.to_string().parse().expect("display output parses");
            prop_assert_eq!(back, name);
        }

        #[test]
        fn proto_round_trip(a in ".*", b in ".*", c in ".*", id in any::<u128>()) {
            let name = SlimName::new(&a, &b, &c).with_id(id);
            let wire = name.to_proto();
            prop_assert_eq!(SlimName::from_proto(&wire).expect("from_proto"), name.clone());
            let enc = wire.name.expect("encoded");
            prop_assert_eq!([enc.component_0, enc.component_1, enc.component_2], name.hashes());
            prop_assert_eq!(encoded_id(&enc), id);
        }

        #[test]
        fn id_round_trip(id in any::<u128>()) {
            let (hi, lo) = split_id(id);
            prop_assert_eq!(join_id(hi, lo), id);
            prop_assert_eq!(parse_id(&id_text(id)).expect("parse"), id);
            prop_assert_eq!(parse_id(&id.to_string()).expect("parse"), id);
        }
    }
}
