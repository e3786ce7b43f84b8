//! The `plugrpc` command: run the host.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use plugrpc::{DEFAULT_LISTEN, DEFAULT_PLUGINS_DIR, Host, HostConfig};
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
    /// Folder of `.wasm` plugins.
    #[arg(long, default_value = DEFAULT_PLUGINS_DIR)]
    plugins: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = HostConfig {
        plugins_dir: args.plugins,
        listen: args.listen,
    };
    let host = Host::bind(&config)
        .await
        .context("plugrpc could not start")?;
    host.serve(shutdown_signal())
        .await
        .context("plugrpc stopped serving")?;
    tracing::info!("shut down");
    Ok(())
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
