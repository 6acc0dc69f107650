//! Emulators of the servers Tandem talks to, so tests, `tandem demo` and plugin authors can
//! run without a Siebel or an Exchange server.
//!
//! Each emulator is an axum router over in-memory state, behind the shared layers in
//! [`common`]: Basic auth, fault injection (`POST /_sim/faults`) and request counting
//! (`GET /_sim/stats`). With [`tls`] they serve HTTPS with a certificate from a CA made at
//! start.

pub mod common;
pub mod ews;
pub mod graph;
pub mod siebel;
pub mod tls;

pub use common::{Credentials, FaultSettings, RunningServer};
pub use tls::SimTls;
