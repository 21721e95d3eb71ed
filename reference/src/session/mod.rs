//! The SLIM session layer (WIRE.md §5), sans-IO.

#[cfg(test)]
mod sim;
