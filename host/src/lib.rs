//! Tandem's host: connectors, plugin runtime, sync engine, state store, admin API.
//!
//! `ARCHITECTURE.md` at the repository root has the map; `main.rs` is the `tandem` command.

pub mod admin;
pub mod client_cli;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod dispatcher;
pub mod engine;
pub mod package;
pub mod plugin;
pub mod plugin_cli;
pub mod record;
pub mod registry;
pub mod scheduler;
pub mod service;
pub mod store;
