//! The on-disk cache of compiled plugins: compiling a component takes hundreds of
//! milliseconds, loading a precompiled `.cwasm` a few.
//!
//! Key: sha256 of the wasm plus a hash of `Engine::precompile_compatibility_hash()`, so a
//! new wasmtime, other engine settings or another CPU never pick up a stale artifact. Files
//! are written to a temporary name and renamed, so a reader never sees half a file. Any
//! cache problem falls back to compiling; the cache is an optimisation, never a requirement.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a `.cwasm` in the cache directory.
    Hit,
    /// Compiled, and written to the cache directory.
    Stored,
    /// Compiled; no cache directory, or it couldn't be written (logged).
    Compiled,
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash is stable across
/// processes (std's `DefaultHasher` makes no such promise).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// The engine part of the cache key: hex of sha256 over the compatibility hash.
pub(crate) fn engine_key(engine: &Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..12])
}

/// Lowercase hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The component for `wasm` (whose sha256 is `sha256`), from the cache when possible.
pub(crate) fn load(
    engine: &Engine,
    engine_key: &str,
    cache_dir: Option<&Path>,
    plugin: &str,
    wasm: &[u8],
    sha256: &str,
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let Some(dir) = cache_dir else {
        return Ok((Component::new(engine, wasm)?, CacheOutcome::Compiled));
    };
    let path = dir.join(format!("{sha256}-{engine_key}.cwasm"));
    if path.is_file() {
        match deserialize(engine, &path) {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(e) => tracing::warn!(
                plugin,
                path = %path.display(),
                error = %e,
                "Cached plugin artifact is unusable; compiling again."
            ),
        }
    }
    let component = Component::new(engine, wasm)?;
    match store(&component, dir, &path) {
        Ok(()) => Ok((component, CacheOutcome::Stored)),
        Err(e) => {
            tracing::warn!(
                plugin,
                path = %path.display(),
                error = %e,
                "Could not write the compiled plugin to the cache; the next start compiles again."
            );
            Ok((component, CacheOutcome::Compiled))
        }
    }
}

/// Loads a `.cwasm` written by [`store`].
///
/// Reads the file into memory rather than `deserialize_file`'s mmap: a mapped file that
/// someone truncates or rewrites in place would SIGBUS the whole host.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: `deserialize` trusts the bytes to be wasmtime output. Only this module writes
    // into the cache directory (tandem's own state directory), always by an atomic rename of
    // a complete `Component::serialize` result, and the file name carries the engine
    // compatibility hash; wasmtime itself also rejects artifacts of another engine version
    // or configuration.
    unsafe { Component::deserialize(engine, &bytes) }
}

fn store(component: &Component, dir: &Path, path: &PathBuf) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(&bytes)?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    Ok(())
}
