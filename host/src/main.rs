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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every plugin in a folder over gRPC.
    Serve(ServeArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colour codes only for a person at a terminal, not in files or pipes.
        .with_ansi(std::io::stdout().is_terminal())
        .init();
    let outcome = match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plugrpc: {}", one_line(&error));
            ExitCode::FAILURE
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
    let host = Host::bind(&config)
        .await
        .context("plugrpc could not start")?;
    host.serve(shutdown_signal()).await;
    tracing::info!("shut down");
    Ok(())
}

/// An error and its causes in one line, each cause once: what went wrong, not where in
/// the code (errors that name their source in their own text are not repeated).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}

/// Completes on Ctrl-C or SIGTERM, so in-flight calls can finish before exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {error}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received: finishing calls in flight");
}
