//! Tests of the harness against the reference relay.
