//! The plugin components compiled from `plugins/` by `host/build.rs` and embedded in the
//! binary: `DEFAULT_PLUGINS` for deployment, one constant per plugin (test plugins hidden).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
