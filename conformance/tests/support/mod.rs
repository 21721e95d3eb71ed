//! Starting the real SLIM node (the server embedded in the slim-bindings wheel) for tests: the
//! shared code of `reference/tests/support/venv.rs`.

#![allow(dead_code)]

#[path = "../../../reference/tests/support/venv.rs"]
pub mod venv;

#[allow(unused_imports)] // each test uses a part
pub use venv::{start_real_node, start_real_node_with, Node};
