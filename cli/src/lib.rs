//! The `tandem` command's parts that know the command line: the demo (emulators and the
//! service together), the admin API's client commands and the plugin package commands.
//! `main.rs` parses the command line; the service itself is the `tandem-host` library.

pub mod client_cli;
pub mod demo;
pub mod plugin_cli;
