//! The `plugrpc` command: run the host.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use plugrpc::{Host, HostConfig};
use tracing_subscriber::EnvFilter;

/// A gRPC server whose handlers are WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// How the log is written: `text` for people, `json` (one object per line) for
    /// machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The log's format.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people (coloured at a terminal).
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every plugin in a folder over gRPC.
    Serve(ServeArgs),
    /// Show what a plugin file is, as the host sees it at load: contract, name, version,
    /// services and methods, imports and the grants they need, size, compile time.
    Inspect(InspectArgs),
    /// Work with a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check a plugin file before deploying it: what the host checks at load, and the
    /// changes that break callers of the version it replaces or conflict with the other
    /// plugins of a folder. Exit status 0: the host would serve it; 1: it would be
    /// refused or break callers (each problem one line); 2: a mistake in what was asked.
    Check(CheckArgs),
    /// Write a new plugin crate serving a .proto: every method answers UNIMPLEMENTED
    /// until written; it builds with `cargo build --target wasm32-wasip2 --release`.
    New(NewArgs),
    /// Rebuild a plugin crate on every save and move each new .wasm into a plugins
    /// folder (a host serving that folder reloads it); runs until Ctrl-C.
    Dev(DevArgs),
    /// Publish a plugin file to an OCI registry (Wasm OCI artifact layout), once it
    /// passes `check`; hosts whose [sources] name the tag pull it. Credentials from the
    /// Docker config file. Exit status 1 when the check fails.
    Push(PushArgs),
}

#[derive(Args)]
struct PushArgs {
    /// The plugin file (`.wasm`).
    file: PathBuf,
    /// Where to publish it: `registry/repository:tag`.
    reference: String,
    /// Plain HTTP to the registry (a loopback or test registry only).
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// PEM CA certificates the registry's certificate may chain to, besides the system's
    /// roots (a private registry's own CA).
    #[arg(long, value_name = "FILE.pem")]
    ca: Option<PathBuf>,
}

#[derive(Args)]
struct NewArgs {
    /// The crate's name, which is the plugin's: lowercase letters, digits, '-', '_'.
    name: String,
    /// The .proto file to serve (copied into the crate; it may import google/protobuf/*).
    #[arg(long, value_name = "FILE.proto")]
    proto: PathBuf,
    /// The folder to write the crate into, new or empty [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The folder holding the SDK crates (plugrpc-guest, plugrpc-build) [default: the
    /// guest-sdk of the checkout this binary was built from].
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_git")]
    sdk_path: Option<PathBuf>,
    /// A git repository holding the SDK crates, instead of a folder.
    #[arg(long, value_name = "URL")]
    sdk_git: Option<String>,
}

#[derive(Args)]
struct DevArgs {
    /// The plugin crate's folder.
    #[arg(default_value = ".")]
    crate_dir: PathBuf,
    /// The plugins folder each build is moved into (created if missing).
    #[arg(long)]
    plugins: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// The plugin file (`.wasm`) to check.
    file: PathBuf,
    /// The version it replaces: every change that breaks that version's callers is a
    /// problem.
    #[arg(long, value_name = "OLD.wasm", conflicts_with = "against_dir")]
    against: Option<PathBuf>,
    /// A plugins folder it is deployed to: the plugin of the same name there is the
    /// version it replaces, and a service another plugin there serves is a conflict.
    #[arg(long, value_name = "PLUGINS_DIR")]
    against_dir: Option<PathBuf>,
}

#[derive(Args)]
struct InspectArgs {
    /// The plugin file (`.wasm`).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a plugrpc.toml and print what it resolves to: the limits and grants of
    /// each plugin it configures (config values by key only).
    Check {
        /// The config file.
        file: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (`plugrpc.toml`): listen address, plugins folder, limits, grants.
    /// Optional; watched while serving, so plugins' config values change without a restart.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder of `.wasm` plugins [default: plugins_dir from the config, else ./plugins].
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Address to listen on [default: listen from the config, else 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the admin endpoints (/healthz, /readyz, /plugins), or `off`
    /// [default: host.admin_listen from the config, else 127.0.0.1:9901].
    #[arg(long)]
    admin: Option<plugrpc::AdminListen>,
    /// Folder the host keeps data in (the embedded key-value store) [default: host.data_dir
    /// from the config, else ./data].
    #[arg(long)]
    data: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Colour codes only for a person at a terminal, not in files or pipes.
            .with_ansi(std::io::stdout().is_terminal())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init(),
    }
    let outcome = match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Inspect(args) => inspect(args).await.map(|()| ExitCode::SUCCESS),
        Command::Config(ConfigCommand::Check { file }) => HostConfig::from_file(&file)
            .map(|config| print!("{}", config.resolved()))
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Check(args) => check(args).await,
        Command::New(args) => new(args).map(|()| ExitCode::SUCCESS),
        Command::Dev(args) => dev(args).await.map(|()| ExitCode::SUCCESS),
        Command::Push(args) => push(args).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            // A mistake of the user's (a bad file, a bad config, an address in use): one
            // line, status 2, as clap answers a bad flag.
            eprintln!("plugrpc: {}", plugrpc::one_line(error.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => HostConfig::from_file(path)?,
        None => HostConfig::default(),
    };
    config.plugins_dir = args.plugins.unwrap_or(config.plugins_dir);
    config.listen = args.listen.unwrap_or(config.listen);
    config.data_dir = args.data.unwrap_or(config.data_dir);
    if let Some(admin) = args.admin {
        config.admin_listen = admin.addr();
    }
    // Listening before anything serves: a signal that comes early still drains (and a
    // SIGHUP does not kill the host, its default action).
    let mut signals = ShutdownSignals::listen()?;
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let host = Host::bind(&config)
        .await
        .context("plugrpc could not start")?;
    tokio::spawn(reload_on_hangup(hangups, host.reloader()));
    host.serve(async move {
        signals.next().await;
        tracing::info!("shutdown signal received: finishing calls in flight");
        // A second signal while calls drain: the operator wants out now.
        tokio::spawn(async move {
            signals.next().await;
            tracing::warn!("second shutdown signal: exiting without waiting for calls in flight");
            std::process::exit(1);
        });
    })
    .await;
    tracing::info!("shut down");
    Ok(())
}

/// Re-reads the config file on every SIGHUP; a config refused leaves the running one.
async fn reload_on_hangup(mut hangups: tokio::signal::unix::Signal, reloader: plugrpc::Reloader) {
    while hangups.recv().await.is_some() {
        reloader.apply("SIGHUP").await;
    }
}

async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let report = plugrpc::inspect::inspect(&args.file).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    use plugrpc::check::Against;
    let against = match (&args.against, &args.against_dir) {
        (Some(file), _) => Against::File(file),
        (None, Some(dir)) => Against::Dir(dir),
        (None, None) => Against::Nothing,
    };
    let verdict = plugrpc::check::check(&args.file, against).await?;
    print!("{}", verdict.text());
    // 1, not 2: the file was checked, and CI should fail on what was found.
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn push(args: PushArgs) -> anyhow::Result<ExitCode> {
    let verdict = plugrpc::check::check(&args.file, plugrpc::check::Against::Nothing).await?;
    let report = match verdict.report {
        Some(report) if verdict.problems.is_empty() => report,
        _ => {
            print!("{}", verdict.text());
            println!("not pushed: the host would refuse it");
            return Ok(ExitCode::from(1));
        }
    };
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let transport =
        plugrpc::oci::Transport::new(args.insecure, args.ca.as_deref()).map_err(|problem| {
            let ca = args.ca.clone().unwrap_or_default();
            anyhow::anyhow!("--ca {}: {problem}", ca.display())
        })?;
    let artifact = plugrpc::oci::Artifact::new(&args.reference, &transport).await?;
    // The contract's interfaces the component exports, as the layout's config lists them.
    let (package, version) = plugrpc::CONTRACT
        .split_once('@')
        .unwrap_or((plugrpc::CONTRACT, ""));
    let exports = ["handler", "describe"]
        .map(|interface| format!("{package}/{interface}@{version}"))
        .to_vec();
    let digest = artifact
        .push(wasm, &report.version, exports, report.imports)
        .await?;
    println!(
        "pushed {} {} as {}@{digest}",
        report.name, report.version, args.reference
    );
    Ok(ExitCode::SUCCESS)
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    use plugrpc::scaffold::{NewPlugin, Sdk};
    let sdk = match (args.sdk_path, args.sdk_git) {
        (Some(path), _) => Sdk::Path(std::path::absolute(&path).unwrap_or(path)),
        (None, Some(url)) => Sdk::Git(url),
        (None, None) => Sdk::built_from().context(
            "this binary's checkout has no guest-sdk any more: pass --sdk-path or --sdk-git",
        )?,
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let files = plugrpc::scaffold::create(&NewPlugin {
        name: &args.name,
        proto: &args.proto,
        dir: &dir,
        sdk,
    })?;
    println!("created plugin crate {} in {}:", args.name, dir.display());
    for file in files {
        println!("  {}", file.display());
    }
    println!(
        "build it: cd {} && cargo build --target wasm32-wasip2 --release",
        dir.display()
    );
    Ok(())
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::listen()?;
    let dev = plugrpc::dev::DevLoop {
        crate_dir: args.crate_dir,
        plugins_dir: args.plugins,
    };
    dev.run(async move { signals.next().await }).await?;
    Ok(())
}

/// Ctrl-C and SIGTERM, listened for from creation on (the default action of a signal
/// that comes before would kill the host without draining).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// Completes on the next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
