//! Builds the default plugins (placeholder).
fn main() {}
