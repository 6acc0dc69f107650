//! `tandem plugin ...`: scaffold, pack, sign, verify, install and list plugin packages, so an
//! integrator can go from a plugin crate to a package a deployment accepts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use tandem_host::package::{
    HOST_API_VERSION, Package, PluginKind, TrustList, generate_signing_key, parse_signing_key,
};
use tandem_host::plugin::{Limits, PluginRuntime};
use tandem_host::registry::PACKAGE_EXTENSION;

/// Kinds as accepted on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Field mapping.
    Mapper,
    /// Record filter.
    Filter,
    /// Conflict policy.
    ConflictPolicy,
}

/// `tandem plugin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Create a new plugin crate (Cargo.toml, src/lib.rs, tandem-plugin.toml).
    New {
        /// Plugin name; also the folder created.
        name: String,
        /// Plugin kind.
        #[arg(long, value_enum, default_value_t = KindArg::Mapper)]
        kind: KindArg,
        /// Where the folder is created.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the tandem-plugin-api crate, as written in the new Cargo.toml.
        #[arg(long, default_value = "../plugin-api")]
        sdk: String,
    },
    /// Put a manifest and a built component into one package file.
    Pack {
        /// The manifest (TOML).
        #[arg(long, default_value = "tandem-plugin.toml")]
        manifest: PathBuf,
        /// The component (`target/wasm32-wasip2/release/<name>.wasm`).
        #[arg(long)]
        component: PathBuf,
        /// The package to write (default `<name>-<version>.tpkg`).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Create an ed25519 key pair: `<output>.key` (secret) and `<output>.pub`.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Sign a package in place with a secret key file.
    Sign {
        /// The package.
        package: PathBuf,
        /// The secret key file (from `tandem plugin keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a package: format, manifest, API version, signature (and trust list when given).
    Verify {
        /// The package.
        package: PathBuf,
        /// Trust list: one hex public key per line; requires a signature by one of them.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Verify a package, check that its component loads, and copy it into a plugins
    /// directory (a running service picks it up within seconds).
    Install {
        /// The package.
        package: PathBuf,
        /// The plugins directory of the deployment.
        #[arg(long)]
        dir: PathBuf,
        /// Trust list, as for `verify`.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// List the packages of a plugins directory and whether each would be accepted.
    List {
        /// The plugins directory.
        #[arg(long)]
        dir: PathBuf,
        /// Trust list, as for `verify`.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

/// Runs one `tandem plugin` subcommand. Refusals are errors with the reason.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(cmd))
        .await
        .context("the plugin command panicked")?
}

fn run_blocking(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
        } => {
            let folder = new_plugin(&name, kind, &dir, &sdk)?;
            println!("created {}", folder.display());
        }
        PluginCommand::Pack {
            manifest,
            component,
            output,
        } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("cannot read the manifest {}", manifest.display()))?;
            let wasm = std::fs::read(&component)
                .with_context(|| format!("cannot read the component {}", component.display()))?;
            let package = Package::new(text, wasm)?;
            package.manifest.check_compatible()?;
            let output = output.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "{}-{}.{PACKAGE_EXTENSION}",
                    package.manifest.name, package.manifest.version
                ))
            });
            package.write(&output)?;
            println!("packed {}", output.display());
        }
        PluginCommand::Keygen { output } => {
            let key = generate_signing_key();
            let secret = output.with_extension("key");
            let public = output.with_extension("pub");
            write_secret(&secret, &hex::encode(key.to_bytes()))?;
            std::fs::write(&public, format!("{}\n", hex::encode(key.verifying_key().to_bytes())))
                .with_context(|| format!("cannot write {}", public.display()))?;
            println!("secret key: {}", secret.display());
            println!("public key: {}", public.display());
        }
        PluginCommand::Sign { package: path, key } => {
            let key_text = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read the key file {}", key.display()))?;
            let key = parse_signing_key(&key_text)?;
            let mut package = Package::read(&path)?;
            package.sign(&key);
            package.write(&path)?;
            println!(
                "signed {} with key {}",
                path.display(),
                hex::encode(key.verifying_key().to_bytes())
            );
        }
        PluginCommand::Verify {
            package: path,
            trust,
        } => {
            let trust = read_trust(trust.as_deref())?;
            let package = Package::read(&path)?;
            let signer = package.verify(trust.as_ref())?;
            package.manifest.check_compatible()?;
            println!(
                "{}: {} {} ({}), api {}, {}",
                path.display(),
                package.manifest.name,
                package.manifest.version,
                package.manifest.kind,
                package.manifest.api,
                signer.map_or("unsigned".into(), |key| format!("signed by {key}"))
            );
        }
        PluginCommand::Install {
            package: path,
            dir,
            trust,
        } => {
            let trust = read_trust(trust.as_deref())?;
            let package = Package::read(&path)?;
            package.verify(trust.as_ref())?;
            package.manifest.check_compatible()?;
            check_loads(&package)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let target = dir.join(format!(
                "{}-{}.{PACKAGE_EXTENSION}",
                package.manifest.name, package.manifest.version
            ));
            package.write(&target)?;
            println!("installed {}", target.display());
        }
        PluginCommand::List { dir, trust } => {
            let trust = read_trust(trust.as_deref())?;
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == PACKAGE_EXTENSION))
                .collect();
            entries.sort();
            for path in entries {
                let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                let verdict = Package::read(&path).and_then(|package| {
                    let signer = package.verify(trust.as_ref())?;
                    package.manifest.check_compatible()?;
                    Ok((package, signer))
                });
                match verdict {
                    Ok((package, signer)) => println!(
                        "{file}\t{}\t{}\t{}\t{}\tok{}",
                        package.manifest.name,
                        package.manifest.version,
                        package.manifest.kind,
                        package.manifest.domains.join(","),
                        if signer.is_some() { ", signed" } else { ", unsigned" }
                    ),
                    Err(error) => println!("{file}\t-\t-\t-\t-\trefused: {error}"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_trust(path: Option<&Path>) -> anyhow::Result<Option<TrustList>> {
    path.map(|p| TrustList::read(p).map_err(anyhow::Error::from))
        .transpose()
}

/// Compiles the component and links it as its declared kind, as the service would.
fn check_loads(package: &Package) -> anyhow::Result<()> {
    let runtime = PluginRuntime::new(None)?;
    let m = &package.manifest;
    let (limits, config) = (Limits::default(), m.config.clone());
    match m.kind {
        PluginKind::Mapper => runtime
            .load_mapper(&m.name, &package.component, limits, config)
            .map(drop),
        PluginKind::Filter => runtime
            .load_filter(&m.name, &package.component, limits, config)
            .map(drop),
        PluginKind::ConflictPolicy => runtime
            .load_conflict_policy(&m.name, &package.component, limits, config)
            .map(drop),
    }
    .map_err(anyhow::Error::from)
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!("cannot create {} (it must not exist yet)", path.display())
    })?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a new plugin crate; returns its folder.
fn new_plugin(name: &str, kind: KindArg, dir: &Path, sdk: &str) -> anyhow::Result<PathBuf> {
    let (kind, lib) = match kind {
        KindArg::Mapper => (PluginKind::Mapper, MAPPER_TEMPLATE),
        KindArg::Filter => (PluginKind::Filter, FILTER_TEMPLATE),
        KindArg::ConflictPolicy => (PluginKind::ConflictPolicy, POLICY_TEMPLATE),
    };
    let manifest_text = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nkind = \"{kind}\"\ndomains = [\"contacts\"]\n\
         api = \"{HOST_API_VERSION}\"\ndescription = \"\"\ncapabilities = []\n\n\
         # Defaults of what the plugin reads with tandem_plugin_api::config(key).\n[config]\n\n\
         # Sandbox limits (defaults shown).\n[limits]\ncall_deadline_ms = 100\nmemory_mib = 64\n"
    );
    tandem_host::package::Manifest::parse(&manifest_text)?;
    let folder = dir.join(name);
    if folder.exists() {
        anyhow::bail!("{} already exists; pick another name or folder", folder.display());
    }
    std::fs::create_dir_all(folder.join("src"))
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
         [dependencies]\ntandem-plugin-api = {{ path = \"{sdk}\" }}\n\n\
         # Built on its own, not as part of an enclosing workspace.\n[workspace]\n"
    );
    for (file, text) in [
        ("Cargo.toml", cargo.as_str()),
        ("tandem-plugin.toml", manifest_text.as_str()),
        ("src/lib.rs", lib),
    ] {
        let path = folder.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(folder)
}

const MAPPER_TEMPLATE: &str = r#"//! A Tandem mapping plugin. Build: `cargo build --release --target wasm32-wasip2`, then
//! `tandem plugin pack --component target/wasm32-wasip2/release/<name>.wasm`.

use tandem_plugin_api::{Context, Fields, Mapper, PluginError, export_mapper};

/// The plugin.
pub struct Plugin;

impl Mapper for Plugin {
    fn to_exchange(_ctx: &Context, siebel: Fields) -> Result<Fields, PluginError> {
        let mut out = Fields::new();
        // Siebel "First Name" → Exchange "GivenName" (blank or missing → Null).
        out.set_from("GivenName", &siebel, "First Name");
        out.set_from("Surname", &siebel, "Last Name");
        Ok(out)
    }

    fn to_siebel(_ctx: &Context, exchange: Fields) -> Result<Fields, PluginError> {
        let mut out = Fields::new();
        out.set_from("First Name", &exchange, "GivenName");
        out.set_from("Last Name", &exchange, "Surname");
        Ok(out)
    }
}

export_mapper!(Plugin);
"#;

const FILTER_TEMPLATE: &str = r#"//! A Tandem filter plugin. Build: `cargo build --release --target wasm32-wasip2`.

use tandem_plugin_api::{Context, Fields, Filter, PluginError, Side, export_filter};

/// The plugin.
pub struct Plugin;

impl Filter for Plugin {
    fn include(_ctx: &Context, _side: Side, record: &Fields) -> Result<bool, PluginError> {
        Ok(record.get_text("Private") != Some("Y"))
    }
}

export_filter!(Plugin);
"#;

const POLICY_TEMPLATE: &str = r#"//! A Tandem conflict-policy plugin. Build: `cargo build --release --target wasm32-wasip2`.

use tandem_plugin_api::{Conflict, ConflictPolicy, Context, PluginError, Resolution, export_conflict_policy};

/// The plugin.
pub struct Plugin;

impl ConflictPolicy for Plugin {
    fn resolve(_ctx: &Context, _conflict: Conflict) -> Result<Resolution, PluginError> {
        Ok(Resolution::TakeSiebel)
    }
}

export_conflict_policy!(Plugin);
"#;
