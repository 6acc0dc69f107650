//! Plugin packages (`.tpkg`): one file that carries a plugin component, its manifest and an
//! optional ed25519 signature, so a plugin can be shared between deployments and checked
//! before it is loaded.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! b"TANDEMP1"                      magic and format version
//! u32  manifest length, then the manifest (UTF-8 TOML, see [`Manifest`])
//! u64  component length, then the WebAssembly component
//! u8   0 = unsigned, 1 = signed; when signed: 32-byte public key, 64-byte signature
//! ```
//!
//! The signature covers [`SIGNING_CONTEXT`] ‖ sha256(manifest) ‖ sha256(component), so neither
//! part can be swapped or edited without breaking it. A deployment's trust list
//! ([`TrustList`]) names the public keys it accepts; when one is configured, unsigned
//! packages and packages signed by other keys are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The first bytes of every package file.
pub const PACKAGE_MAGIC: &[u8; 8] = b"TANDEMP1";

/// Prefix of the signed message, so a package signature can't be replayed as anything else.
pub const SIGNING_CONTEXT: &[u8] = b"tandem-plugin-package-v1\0";

/// The WIT API version this host implements (`wit/tandem-plugin.wit`); new plugins are
/// built against it.
pub const HOST_API_VERSION: &str = "0.2.0";

/// The API versions this host loads, as named in errors.
pub const LOADED_API_VERSIONS: &str = "0.2.0 (and loads plugins built for 0.2.x and 0.1.x)";

/// Largest manifest accepted, in bytes.
const MAX_MANIFEST_BYTES: u32 = 256 * 1024;

/// Largest component accepted, in bytes.
const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// A package could not be read, verified or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Reading or writing the file failed.
    #[error("cannot access plugin package {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The bytes are not a package.
    #[error("not a valid Tandem plugin package: {0}; build one with `tandem plugin pack`")]
    Format(String),
    /// The manifest is not valid TOML or misses a field.
    #[error("the plugin manifest is invalid: {0}")]
    Manifest(String),
    /// A trust list is configured and the package carries no signature.
    #[error(
        "plugin `{plugin}` is not signed, and this deployment only accepts packages signed by \
         a trusted key; sign it with `tandem plugin sign`"
    )]
    Unsigned {
        /// Plugin name.
        plugin: String,
    },
    /// The signature does not match the content: the package was altered after signing.
    #[error(
        "plugin `{plugin}`: the signature does not match the package content (tampered or \
         damaged); get the package again from its publisher"
    )]
    BadSignature {
        /// Plugin name.
        plugin: String,
    },
    /// The signature is valid but its key is not on the trust list.
    #[error(
        "plugin `{plugin}` is signed by key {key}, which is not on this deployment's trust \
         list; add the key to the trust list if you trust its publisher"
    )]
    UntrustedKey {
        /// Plugin name.
        plugin: String,
        /// Hex of the public key.
        key: String,
    },
    /// The plugin needs a WIT API version this host does not implement.
    #[error(
        "plugin `{plugin}` requires plugin API {required}, but this host implements {host}; \
         {advice}"
    )]
    IncompatibleApi {
        /// Plugin name.
        plugin: String,
        /// What the manifest asks for.
        required: String,
        /// What the host implements.
        host: &'static str,
        /// What to do.
        advice: &'static str,
    },
    /// A key or trust-list file is unusable.
    #[error("invalid key: {0}")]
    Key(String),
}

/// The kind of a plugin (its WIT world).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Field mapping (world `mapper`).
    Mapper,
    /// Record filter (world `filter`).
    Filter,
    /// Conflict policy (world `conflict-policy`).
    ConflictPolicy,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Mapper => "mapper",
            PluginKind::Filter => "filter",
            PluginKind::ConflictPolicy => "conflict-policy",
        })
    }
}

/// Per-plugin sandbox limits a manifest may ask for (defaults when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Per-call deadline in milliseconds (default 100).
    pub call_deadline_ms: Option<u64>,
    /// Memory cap in MiB (default 64).
    pub memory_mib: Option<u64>,
}

/// `tandem-plugin.toml`: what a package says about its plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name (letters, digits, `-`, `_`).
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// Which world the component implements.
    pub kind: PluginKind,
    /// The sync domains it serves ("contacts", "calendar", ...).
    pub domains: Vec<String>,
    /// The WIT API version it was built against, e.g. "0.1.0".
    pub api: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Configuration keys and their defaults (what the plugin's `config(key)` returns).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Capabilities it asks for. This host grants none beyond logging and configuration,
    /// so any entry here makes the package refused (a plugin must not silently run without
    /// something it needs).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: ManifestLimits,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, PackageError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| PackageError::Manifest(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), PackageError> {
        let bad = |m: String| Err(PackageError::Manifest(m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "name `{}` must be 1 to 64 letters, digits, `-` or `_`",
                self.name
            ));
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return bad(format!("version `{}` is not semver: {e}", self.version));
        }
        if let Err(e) = semver::Version::parse(&self.api) {
            return bad(format!(
                "api `{}` is not a semver version like \"0.1.0\": {e}",
                self.api
            ));
        }
        if self.domains.is_empty() {
            return bad("domains is empty; name the sync domains the plugin serves".into());
        }
        Ok(())
    }

    /// The parsed plugin version (checked by [`Manifest::parse`]).
    pub fn semver(&self) -> semver::Version {
        semver::Version::parse(&self.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }

    /// Refuses an incompatible API version or a capability this host does not grant.
    pub fn check_compatible(&self) -> Result<(), PackageError> {
        check_api_version(&self.name, &self.api)?;
        if let Some(capability) = self.capabilities.first() {
            return Err(PackageError::Manifest(format!(
                "plugin `{}` requests capability `{capability}`, which this host does not \
                 grant (plugins get logging and configuration only)",
                self.name
            )));
        }
        Ok(())
    }
}

/// Whether a plugin built for WIT API `required` loads in this host (policy:
/// wit/COMPATIBILITY.md). In 0.x the minor version is the breaking one: a 0.2 host loads any
/// 0.2.x plugin and, through its kept 0.1.0 bindings, any 0.1.x plugin; from 1.0 a plugin
/// built for an older or equal minor loads.
pub fn check_api_version(plugin: &str, required: &str) -> Result<(), PackageError> {
    let host = semver::Version::parse(HOST_API_VERSION).expect("HOST_API_VERSION is semver");
    let incompatible = |advice| PackageError::IncompatibleApi {
        plugin: plugin.into(),
        required: required.into(),
        host: LOADED_API_VERSIONS,
        advice,
    };
    let wanted = semver::Version::parse(required)
        .map_err(|_| incompatible("the manifest's `api` must be a semver version"))?;
    // The versions the host has bindings for (the table in `plugin/wit.rs`) load.
    if crate::plugin::loads_api_version(&wanted) {
        return Ok(());
    }
    if wanted.major != host.major || (host.major == 0 && wanted.minor != host.minor) {
        return Err(incompatible(
            "rebuild the plugin against this host's tandem-plugin-api, or run a host that \
             implements that API",
        ));
    }
    if host.major > 0 && wanted.minor > host.minor {
        return Err(incompatible(
            "upgrade the host, or rebuild the plugin against an older tandem-plugin-api",
        ));
    }
    Ok(())
}

/// A package's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSignature {
    /// The signer's public key.
    pub public_key: [u8; 32],
    /// The ed25519 signature.
    pub signature: [u8; 64],
}

/// A package in memory.
#[derive(Debug, Clone)]
pub struct Package {
    /// The manifest text as packed (what the signature covers).
    pub manifest_text: String,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The WebAssembly component.
    pub component: Vec<u8>,
    /// The signature, when signed.
    pub signature: Option<PackageSignature>,
}

impl Package {
    /// A new unsigned package.
    pub fn new(manifest_text: String, component: Vec<u8>) -> Result<Package, PackageError> {
        let manifest = Manifest::parse(&manifest_text)?;
        if !component.starts_with(b"\0asm") {
            return Err(PackageError::Format(
                "the component is not a WebAssembly file (no \\0asm header)".into(),
            ));
        }
        Ok(Package {
            manifest_text,
            manifest,
            component,
            signature: None,
        })
    }

    /// Parses package bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, PackageError> {
        let mut rest = bytes
            .strip_prefix(PACKAGE_MAGIC.as_slice())
            .ok_or_else(|| PackageError::Format("it does not start with TANDEMP1".into()))?;
        let manifest_len = u32::from_le_bytes(take::<4>(&mut rest, "manifest length")?);
        if manifest_len > MAX_MANIFEST_BYTES {
            return Err(PackageError::Format(format!(
                "manifest of {manifest_len} bytes is over the {MAX_MANIFEST_BYTES} limit"
            )));
        }
        let manifest = take_slice(&mut rest, manifest_len as usize, "manifest")?;
        let manifest_text = std::str::from_utf8(manifest)
            .map_err(|_| PackageError::Format("the manifest is not UTF-8".into()))?
            .to_owned();
        let component_len = u64::from_le_bytes(take::<8>(&mut rest, "component length")?);
        if component_len > MAX_COMPONENT_BYTES {
            return Err(PackageError::Format(format!(
                "component of {component_len} bytes is over the {MAX_COMPONENT_BYTES} limit"
            )));
        }
        let component = take_slice(&mut rest, component_len as usize, "component")?.to_vec();
        let [flag] = take::<1>(&mut rest, "signature flag")?;
        let signature = match flag {
            0 => None,
            1 => Some(PackageSignature {
                public_key: take::<32>(&mut rest, "public key")?,
                signature: take::<64>(&mut rest, "signature")?,
            }),
            other => {
                return Err(PackageError::Format(format!(
                    "signature flag is {other}, expected 0 or 1"
                )));
            }
        };
        if !rest.is_empty() {
            return Err(PackageError::Format(format!(
                "{} unexpected bytes after the end",
                rest.len()
            )));
        }
        let mut package = Package::new(manifest_text, component)?;
        package.signature = signature;
        Ok(package)
    }

    /// Reads a package file.
    pub fn read(path: &Path) -> Result<Package, PackageError> {
        let bytes = std::fs::read(path).map_err(|source| PackageError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Package::from_bytes(&bytes)
    }

    /// The package's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.component.len() + self.manifest_text.len() + 128);
        out.extend_from_slice(PACKAGE_MAGIC);
        out.extend_from_slice(&(self.manifest_text.len() as u32).to_le_bytes());
        out.extend_from_slice(self.manifest_text.as_bytes());
        out.extend_from_slice(&(self.component.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.component);
        match &self.signature {
            None => out.push(0),
            Some(sig) => {
                out.push(1);
                out.extend_from_slice(&sig.public_key);
                out.extend_from_slice(&sig.signature);
            }
        }
        out
    }

    /// Writes the package to `path` (via a temporary file and a rename, so a watcher never
    /// sees half a package).
    pub fn write(&self, path: &Path) -> Result<(), PackageError> {
        let io = |source| PackageError::Io {
            path: path.display().to_string(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, &self.to_bytes()).map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// What the signature covers.
    fn signed_message(&self) -> Vec<u8> {
        let mut message = SIGNING_CONTEXT.to_vec();
        message.extend_from_slice(&Sha256::digest(self.manifest_text.as_bytes()));
        message.extend_from_slice(&Sha256::digest(&self.component));
        message
    }

    /// Signs the package (replacing any previous signature).
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.sign(&self.signed_message());
        self.signature = Some(PackageSignature {
            public_key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        });
    }

    /// Checks the signature (always, when present) and the trust list (when given): with a
    /// trust list, the package must be signed by one of its keys. Returns the signer.
    pub fn verify(&self, trust: Option<&TrustList>) -> Result<Option<String>, PackageError> {
        let plugin = || self.manifest.name.clone();
        let Some(sig) = &self.signature else {
            return match trust {
                Some(_) => Err(PackageError::Unsigned { plugin: plugin() }),
                None => Ok(None),
            };
        };
        let key = VerifyingKey::from_bytes(&sig.public_key)
            .map_err(|_| PackageError::BadSignature { plugin: plugin() })?;
        let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
        key.verify_strict(&self.signed_message(), &signature)
            .map_err(|_| PackageError::BadSignature { plugin: plugin() })?;
        let key_hex = hex::encode(sig.public_key);
        if let Some(trust) = trust
            && !trust.keys.contains(&sig.public_key)
        {
            return Err(PackageError::UntrustedKey {
                plugin: plugin(),
                key: key_hex,
            });
        }
        Ok(Some(key_hex))
    }

    /// Lowercase hex sha256 of the component.
    pub fn component_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.component))
    }
}

fn take<const N: usize>(rest: &mut &[u8], what: &str) -> Result<[u8; N], PackageError> {
    let slice = take_slice(rest, N, what)?;
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    Ok(out)
}

fn take_slice<'a>(rest: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8], PackageError> {
    if rest.len() < len {
        return Err(PackageError::Format(format!(
            "the file ends inside the {what} (truncated?)"
        )));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

/// The public keys a deployment accepts package signatures from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    keys: Vec<[u8; 32]>,
}

impl TrustList {
    /// Parses a trust list: one hex public key per line; `#` starts a comment.
    pub fn parse(text: &str) -> Result<TrustList, PackageError> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = parse_public_key(line).map_err(|e| {
                PackageError::Key(format!("trust list line {}: {e}", number + 1))
            })?;
            keys.push(key.to_bytes());
        }
        Ok(TrustList { keys })
    }

    /// Reads a trust-list file.
    pub fn read(path: &Path) -> Result<TrustList, PackageError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackageError::Io {
            path: path.display().to_string(),
            source,
        })?;
        TrustList::parse(&text)
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when it holds no key (then every package is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A public key from its hex form.
pub fn parse_public_key(hex_text: &str) -> Result<VerifyingKey, PackageError> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PackageError::Key("a public key is 64 hex digits".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| PackageError::Key("not a valid ed25519 public key".into()))
}

/// A signing key from its hex form (the 32-byte secret seed).
pub fn parse_signing_key(hex_text: &str) -> Result<SigningKey, PackageError> {
    let bytes: [u8; 32] = hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| PackageError::Key("a signing key file holds 64 hex digits".into()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A fresh random signing key.
pub fn generate_signing_key() -> SigningKey {
    let seed: [u8; 32] = rand::random();
    SigningKey::from_bytes(&seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
name = "contact-mapping"
version = "1.2.0"
kind = "mapper"
domains = ["contacts"]
api = "0.1.0"
[config]
category = "Siebel Contact"
"#;

    fn package() -> Package {
        Package::new(MANIFEST.into(), b"\0asm\x0d\0\x01\0".to_vec()).expect("valid")
    }

    #[test]
    fn round_trips_signed_and_unsigned() {
        let mut p = package();
        let back = Package::from_bytes(&p.to_bytes()).expect("parses");
        assert_eq!(back.manifest.name, "contact-mapping");
        assert_eq!(back.manifest.config["category"], "Siebel Contact");
        assert!(back.signature.is_none());
        p.sign(&generate_signing_key());
        let back = Package::from_bytes(&p.to_bytes()).expect("parses");
        assert_eq!(back.signature, p.signature);
        assert!(back.verify(None).expect("valid").is_some());
    }

    #[test]
    fn trust_list_refuses_unsigned_untrusted_and_tampered() {
        let key = generate_signing_key();
        let trust =
            TrustList::parse(&format!("# ops key\n{}\n", hex::encode(key.verifying_key().to_bytes())))
                .expect("parses");
        let mut p = package();
        assert!(matches!(p.verify(Some(&trust)), Err(PackageError::Unsigned { .. })));
        p.sign(&key);
        assert!(p.verify(Some(&trust)).is_ok());

        let mut other = package();
        other.sign(&generate_signing_key());
        let err = other.verify(Some(&trust)).expect_err("untrusted");
        assert!(matches!(err, PackageError::UntrustedKey { .. }), "{err}");

        let mut bytes = p.to_bytes();
        let at = bytes.len() - 97 - 2; // inside the component
        bytes[at] ^= 1;
        let tampered = Package::from_bytes(&bytes).expect("still parses");
        let err = tampered.verify(None).expect_err("tampered");
        assert!(matches!(err, PackageError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn truncated_and_foreign_files_are_format_errors() {
        let bytes = package().to_bytes();
        for cut in [0, 5, 12, bytes.len() - 1] {
            assert!(matches!(
                Package::from_bytes(&bytes[..cut]),
                Err(PackageError::Format(_))
            ));
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Package::from_bytes(&extra).is_err());
    }

    #[test]
    fn api_versions_follow_the_policy() {
        assert!(check_api_version("p", "0.1.0").is_ok());
        assert!(check_api_version("p", "0.1.7").is_ok());
        assert!(check_api_version("p", HOST_API_VERSION).is_ok());
        assert!(check_api_version("p", "0.2.3").is_ok());
        let err = check_api_version("p", "0.3.0").expect_err("incompatible");
        let text = err.to_string();
        assert!(
            text.contains("0.3.0") && text.contains(HOST_API_VERSION) && text.contains("0.1.x"),
            "{text}"
        );
        assert!(check_api_version("p", "0.0.9").is_err());
        assert!(check_api_version("p", "1.0.0").is_err());
    }

    #[test]
    fn manifests_are_checked() {
        for bad in [
            MANIFEST.replace("1.2.0", "one"),
            MANIFEST.replace("[\"contacts\"]", "[]"),
            MANIFEST.replace("contact-mapping", "bad name"),
            format!("surprise = 1\n{MANIFEST}"),
        ] {
            assert!(Manifest::parse(&bad).is_err(), "{bad}");
        }
        let mut m = Manifest::parse(MANIFEST).expect("valid");
        m.capabilities = vec!["network".into()];
        assert!(m.check_compatible().is_err());
    }
}
