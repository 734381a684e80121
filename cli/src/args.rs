//! Command-line arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// An embeddable gate for HTTP APIs: rate limits and CORS from one config file.
#[derive(Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve a demo HTTP API on 127.0.0.1 with the gate in front (SIGHUP reloads the config).
    Serve(ServeArgs),
    /// Make one gate decision from the command line (exit 1 when refused or limited): a dry run
    /// against an in-memory copy of the config's store unless --live.
    Check(CheckArgs),
    /// Check a config file and explain its errors (exit 1 when invalid).
    Validate(ValidateArgs),
    /// List the keys of a store with their state, the top offenders and recent denials.
    Inspect(InspectArgs),
    /// Forget a key's state under a policy: unblocks it.
    Reset(ResetArgs),
}

/// Where the config is, and an optional store folder overriding its `[store] path`.
#[derive(Args)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(long, short, default_value = "examples/portcullis.toml")]
    pub config: PathBuf,
    /// The store folder, instead of the config's `[store] path`.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// The request path.
    pub path: String,
    /// The client address.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The `Origin` header.
    #[arg(long)]
    pub origin: Option<String>,
    /// `Access-Control-Request-Method` (with OPTIONS: a preflight).
    #[arg(long)]
    pub request_method: Option<String>,
    /// `Access-Control-Request-Headers`.
    #[arg(long)]
    pub request_headers: Option<String>,
    /// The principal (user id or API key).
    #[arg(long)]
    pub principal: Option<String>,
    /// The principal's tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// Decide this many times in a row, showing the last.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub repeat: u32,
    /// Open the configured store and charge it, as a request to the server would. Without it,
    /// check is a dry run: it decides against an in-memory copy of the config's store (empty
    /// counters, the same capacity) and charges nothing persistent.
    #[arg(long)]
    pub live: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// The config file.
    pub config: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this policy.
    #[arg(long)]
    pub policy: Option<String>,
    /// Ask a running `portcullis serve` instead of opening the store.
    #[arg(long)]
    pub server: Option<SocketAddr>,
    /// List the table files of a shared store's folder (policy, definition, size, last
    /// opened), without a config; `--config` with the same folder lists their keys.
    #[arg(long, conflicts_with = "server")]
    pub store: Option<PathBuf>,
}

#[derive(Args)]
pub struct ResetArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The policy.
    #[arg(long)]
    pub policy: String,
    /// The key as listed by inspect: `ip:203.0.113.9`, `principal:alice`, `route:/api/`,
    /// `global`.
    #[arg(long)]
    pub key: String,
    /// Reset on a running `portcullis serve` instead of opening the store.
    #[arg(long)]
    pub server: Option<SocketAddr>,
}
