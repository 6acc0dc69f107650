//! Tandem's host as a library: the sync engine and everything it runs on. Layers, top to
//! bottom (a module imports only from layers below it; `tests/tidy.rs` checks the rules):
//!
//! - `service`: wiring (configuration → store → plugins → clients → scheduler → admin);
//!   `config`: the `tandem serve` configuration
//! - `admin`: the HTTP API
//! - `scheduler`: leases, groups, wakes
//! - `metrics`: what `/metrics` renders
//! - `engine`: one user's run
//! - `exchange` (`exchange/ews`, `exchange/graph`), `siebel` (`siebel/change_feed`),
//!   `plugin` + `registry` + `package`, `store`
//! - `domain`, `record`, `telemetry`, `secrets`, `transport`, `oauth`: the bottom layer
//!   (`transport` builds every outbound HTTP(S) client: trusted roots, `ca_file`, proxies, TLS
//!   errors; `oauth` gets the connectors' client-credentials tokens, with secrets or
//!   certificates)
//!
//! The command line, the demo and the emulators are not here: they are the `tandem` crate
//! (`cli/`), and `tandem-sim` is only a dev-dependency. `ARCHITECTURE.md` has the map.

pub mod admin;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod engine;
pub mod exchange;
pub mod metrics;
pub mod oauth;
pub mod package;
pub mod plugin;
pub mod record;
pub mod registry;
pub mod scheduler;
pub mod secrets;
pub mod service;
pub mod siebel;
pub mod store;
pub mod telemetry;
pub mod transport;
