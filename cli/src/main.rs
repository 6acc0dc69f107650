//! The `tandem` command: the service, the demo, the emulators and the configuration check.
//!
//! Standard output carries only what scripts read (the endpoint lines of `demo` and `sim`,
//! the problems of `check-config`); logs go to standard error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tandem_cli::client_cli::{self, AdminTarget, SyncListCommand, UsersCommand};
use tandem_host::config;
use tandem_cli::demo::{Demo, DemoOptions};
use tandem_host::exchange::ews::EwsAuth;
use tandem_host::service::{Service, ServiceSettings};
use tandem_sim::ews::{AuthScheme, EwsSim, EwsSimConfig};
use tandem_sim::siebel::{SiebelSim, SiebelSimConfig};

#[derive(Debug, Parser)]
#[command(name = "tandem", version, about = "Keeps Siebel CRM and Microsoft Exchange in step, user by user.")]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start both emulators, seeded demo data and the service on loopback.
    Demo {
        /// Folder for the SQLite state (a fresh temporary folder when absent).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// No automatic syncs: users sync only when asked through the admin API.
        #[arg(long)]
        manual: bool,
        /// Serve the emulators over HTTPS with a CA made at start (printed as `ca: PATH`);
        /// the service trusts it through ca_file.
        #[arg(long)]
        tls: bool,
        /// How the service signs in to the EWS emulator, which then offers only that scheme:
        /// basic, ntlm, negotiate or oauth (bearer tokens from the emulator's token endpoint).
        #[arg(long, default_value = "basic")]
        ews_auth: String,
    },
    /// Run the service with a configuration file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run one emulator on its own.
    Sim {
        #[arg(value_enum)]
        server: SimKind,
        /// Address to listen on, like 127.0.0.1:8081 (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Keep the emulator's data in this file across restarts.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Share of requests (0 to 1) answered with an injected fault.
        #[arg(long, default_value_t = 0.0)]
        fault_rate: f64,
        /// Seed of the fault injection, so a run can be repeated.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// EWS and Graph: the only mailboxes that exist (comma-separated); others get
        /// ErrorNonExistentMailbox. By default a mailbox is created on first use.
        #[arg(long, value_delimiter = ',')]
        mailboxes: Option<Vec<String>>,
        /// Graph: requests per app and mailbox admitted per throttling window (Outlook: 10000).
        #[arg(long, default_value_t = 10_000)]
        throttle_requests: u32,
        /// Graph: the throttling window in seconds (Outlook: 600).
        #[arg(long, default_value_t = 600)]
        throttle_window_secs: u64,
        /// Graph: requests per app and mailbox in progress at once (Outlook: 4).
        #[arg(long, default_value_t = 4)]
        throttle_concurrency: u32,
        /// Graph: a certificate (PEM) registered with the app, for certificate credentials
        /// (repeat for several); the client secret keeps working.
        #[arg(long = "certificate")]
        certificates: Vec<PathBuf>,
        /// Serve HTTPS with a certificate for 127.0.0.1 and localhost from a CA made at start;
        /// the CA's PEM is written beside --data (or to a temporary folder) and printed as
        /// `ca: PATH`.
        #[arg(long)]
        tls: bool,
        /// EWS: the sign-in schemes offered in WWW-Authenticate and accepted, comma-separated:
        /// basic, ntlm, negotiate (a fresh Exchange 2016/2019 offers ntlm,negotiate). With
        /// ntlm or negotiate the user is DOMAIN\user.
        #[arg(long, default_value = "basic")]
        auth: String,
        /// Siebel: the time zone of the administrator's profile (IANA name, like
        /// America/New_York); date-times go in and out in it.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
    },
    /// Check a configuration file: exit 0 when valid, 2 with one line per problem.
    CheckConfig { file: PathBuf },
    /// Check a deployment against its servers without changing anything: each endpoint's
    /// TLS, sign-in, permissions, the Siebel fields the mappings write, the database. One line
    /// per check; exit 0 when none fails.
    Doctor {
        /// The configuration `tandem serve` uses.
        #[arg(long)]
        config: PathBuf,
        /// A mailbox to sign in to when the file has no [[users]] on its backend.
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// Print the SHA-256 digest of an admin token read from standard input, for
    /// `admin.token_sha256` (so the token itself need not be in the configuration).
    HashToken,
    /// Per user: last sync, result and lag (from a running service).
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show and change the user map of a running service.
    Users {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Show and change a user's sync list ("Add To Sync List").
    SyncList {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: SyncListCommand,
    },
    /// Sync users now, with a progress bar and counts.
    Sync {
        #[command(flatten)]
        target: AdminTarget,
        /// A user to sync (repeat for several).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Every enabled user.
        #[arg(long, conflicts_with = "users")]
        all: bool,
        /// Print the writes each run would make; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create, pack, sign, verify, install and list plugin packages.
    Plugin {
        #[command(subcommand)]
        command: tandem_cli::plugin_cli::PluginCommand,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SimKind {
    Siebel,
    Ews,
    Graph,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Every HTTP client of the process (the admin client too) uses rustls with ring.
    tandem_host::transport::install_crypto_provider();
    if let Command::CheckConfig { file } = &cli.command {
        return check_config(file);
    }
    if let Command::HashToken = &cli.command {
        return hash_token();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tandem hash-token`: the first line of standard input is the token (a trailing newline
/// and surrounding blanks are not part of it, as in the admin API).
fn hash_token() -> ExitCode {
    let mut line = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the token from standard input: {error}");
        return ExitCode::from(2);
    }
    if line.trim().is_empty() {
        eprintln!("error: no token on standard input; try `printf %s \"$TOKEN\" | tandem hash-token`");
        return ExitCode::from(2);
    }
    println!("{}", hex::encode(tandem_host::secrets::token_digest(&line)));
    ExitCode::SUCCESS
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(_) => {
            println!("{}: valid", file.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                println!("{problem}");
            }
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo { state_dir, manual, tls, ews_auth } => {
            let ews_auth = EwsAuth::parse(&ews_auth)
                .with_context(|| format!("--ews-auth must be basic, ntlm, negotiate or oauth, not `{ews_auth}`"))?;
            let demo = Demo::start(DemoOptions { state_dir, manual, seed: true, tls, ews_auth, ..Default::default() }).await?;
            print!("{}", demo.endpoint_lines());
            flush_stdout();
            wait_for_shutdown().await;
            demo.stop().await;
        }
        Command::Serve { config: path } => {
            let config = config::load(&path).map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("{} is not valid:\n{}", path.display(), lines.join("\n"))
            })?;
            let service = Service::start(ServiceSettings::from_config(&config)?)
            .await?;
            println!("admin: {}", service.admin_url);
            flush_stdout();
            wait_for_shutdown().await;
            service.stop().await;
        }
        Command::Sim {
            server,
            listen,
            data,
            fault_rate,
            seed,
            mailboxes,
            throttle_requests,
            throttle_window_secs,
            throttle_concurrency,
            certificates,
            tls,
            auth,
            time_zone,
        } => {
            if !(0.0..=1.0).contains(&fault_rate) {
                anyhow::bail!("--fault-rate must be between 0 and 1, got {fault_rate}");
            }
            let tls = match tls {
                true => Some(SimServing::tls(server, data.as_deref())?),
                false => None,
            };
            let serving = tls.as_ref();
            match server {
                SimKind::Siebel => {
                    let time_zone = time_zone
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--time-zone '{time_zone}' is not an IANA time zone; give one like America/New_York"))?;
                    let config = SiebelSimConfig { fault_rate, seed, data_file: data, time_zone, ..Default::default() };
                    let credentials = config.credentials.clone();
                    let sim = SiebelSim::new(config)?;
                    let server = match serving {
                        Some(tls) => sim.serve_tls(listen, &tls.tls).await,
                        None => sim.serve(listen).await,
                    }
                    .with_context(|| format!("cannot listen on {listen}"))?;
                    println!("siebel: {}/siebel/v1.0", server.base_url());
                    println!("siebel-auth: {}", credentials.display());
                    print_ca(serving);
                    flush_stdout();
                    wait_for_shutdown().await;
                    server.stop().await;
                }
                SimKind::Ews => {
                    let auth = AuthScheme::parse_list(&auth).map_err(|why| anyhow::anyhow!("--auth: {why}"))?;
                    let mut config = EwsSimConfig { fault_rate, seed, data_file: data, mailboxes, ..Default::default() };
                    if auth.iter().any(|scheme| matches!(scheme, AuthScheme::Ntlm | AuthScheme::Negotiate)) {
                        // Windows sign-in names the account with its domain.
                        config.credentials.user = format!("{}\\{}", tandem_sim::ews::ntlm::DEFAULT_NETBIOS_DOMAIN, config.credentials.user);
                    }
                    let auth_offered = auth.clone();
                    config.auth = auth;
                    let credentials = config.credentials.clone();
                    let sim = EwsSim::new(config)?;
                    let server = match serving {
                        Some(tls) => sim.serve_tls(listen, &tls.tls).await,
                        None => sim.serve(listen).await,
                    }
                    .with_context(|| format!("cannot listen on {listen}"))?;
                    println!("ews: {}/EWS/Exchange.asmx", server.base_url());
                    println!("ews-auth: {}", credentials.display());
                    if auth_offered.contains(&AuthScheme::Bearer) {
                        println!("ews-token-url: {}{}", server.base_url(), tandem_sim::ews::oauth::TOKEN_PATH);
                        println!("ews-oauth-app: {}", sim.oauth_app().display());
                    }
                    print_ca(serving);
                    flush_stdout();
                    wait_for_shutdown().await;
                    server.stop().await;
                }
                SimKind::Graph => {
                    if throttle_requests == 0 || throttle_window_secs == 0 || throttle_concurrency == 0 {
                        anyhow::bail!("--throttle-requests, --throttle-window-secs and --throttle-concurrency must be at least 1");
                    }
                    let throttle = tandem_sim::graph::ThrottleLimits {
                        requests_per_window: throttle_requests,
                        window_ms: throttle_window_secs.saturating_mul(1000),
                        concurrent_requests: throttle_concurrency,
                    };
                    let certificates = certificates
                        .iter()
                        .map(|path| std::fs::read_to_string(path).with_context(|| format!("cannot read --certificate {}", path.display())))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let config = tandem_sim::graph::GraphSimConfig {
                        fault_rate,
                        seed,
                        data_file: data,
                        mailboxes,
                        throttle,
                        certificates,
                        ..Default::default()
                    };
                    let sim = tandem_sim::graph::GraphSim::new(config)?;
                    let server = match serving {
                        Some(tls) => sim.serve_tls(listen, &tls.tls).await,
                        None => sim.serve(listen).await,
                    }
                    .with_context(|| format!("cannot listen on {listen}"))?;
                    println!("graph: {}/v1.0", server.base_url());
                    println!("graph-auth: {}", sim.credentials().display());
                    println!("graph-token: {}", sim.token_url(&server.base_url()));
                    print_ca(serving);
                    flush_stdout();
                    wait_for_shutdown().await;
                    server.stop().await;
                }
            }
        }
        Command::CheckConfig { file } => return Ok(check_config(&file)),
        Command::Doctor { config: path, mailbox } => {
            let config = match config::load(&path) {
                Ok(config) => config,
                Err(problems) => {
                    for problem in problems {
                        println!("FAIL configuration: {problem}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let report = tandem_host::doctor::run(&config, &tandem_host::doctor::DoctorOptions { mailbox }).await;
            print!("{report}");
            flush_stdout();
            return Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::HashToken => return Ok(hash_token()),
        Command::Status { target } => return client_cli::status(target).await,
        Command::Users { target, command } => return client_cli::users(target, command).await,
        Command::SyncList { target, command } => return client_cli::sync_list(target, command).await,
        Command::Sync { target, users, all, dry_run } => return client_cli::sync(target, users, all, dry_run).await,
        Command::Plugin { command } => return tandem_cli::plugin_cli::run(command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tandem sim --tls`: the emulator's CA and where its PEM is.
struct SimServing {
    tls: tandem_sim::SimTls,
    ca_file: PathBuf,
    /// Holds the CA file when there is no --data folder to put it in.
    _folder: Option<tempfile::TempDir>,
}

impl SimServing {
    /// A fresh CA; its PEM goes beside the --data file, else into a temporary folder that
    /// lasts as long as the process.
    fn tls(server: SimKind, data: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let tls = tandem_sim::SimTls::generate().context("cannot make the emulator's certificates")?;
        let name = format!("{}-ca.pem", server.name());
        let (folder, temp) = match data.and_then(|d| d.parent()) {
            Some(parent) if !parent.as_os_str().is_empty() => (parent.to_path_buf(), None),
            Some(_) => (PathBuf::from("."), None),
            None => {
                let temp = tempfile::Builder::new().prefix("tandem-sim-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let ca_file = tls.write_ca(&folder, &name).with_context(|| format!("cannot write the CA to {}", folder.display()))?;
        Ok(Self { tls, ca_file, _folder: temp })
    }
}

impl SimKind {
    fn name(self) -> &'static str {
        match self {
            SimKind::Siebel => "siebel",
            SimKind::Ews => "ews",
            SimKind::Graph => "graph",
        }
    }
}

fn print_ca(serving: Option<&SimServing>) {
    if let Some(serving) = serving {
        println!("ca: {}", serving.ca_file.display());
    }
}

fn flush_stdout() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
