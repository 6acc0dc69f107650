//! Connectors: the clients Tandem uses to talk to Siebel and Exchange.

pub mod ews;
pub mod exchange;
pub mod graph;
pub mod siebel;
