//! The target bodies, one module each. The checked entry points (allocation bound included)
//! are the functions at the crate root ([`crate::frame`], [`crate::relay`], …).

pub mod config;
pub mod frame;
pub mod jwt;
pub mod link;
pub mod relay;
pub mod reliable;
pub mod session;
