//! Tandem's host: connectors, plugin runtime, sync engine, state store, admin API.
//!
//! `ARCHITECTURE.md` at the repository root has the map; `main.rs` is the `tandem` command.

pub mod admin;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod engine;
pub mod plugin;
pub mod record;
pub mod registry;
pub mod service;
pub mod store;
