//! Tandem's host: connectors, plugin runtime, sync engine, state store, admin API.

pub mod record;
