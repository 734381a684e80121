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
#[derive(Args, Clone)]
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
    /// Stand in front of this HTTP application as a reverse proxy instead of serving the
    /// demo API (e.g. http://127.0.0.1:3000).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Serve the admin API (stats, keys, reset, metrics) on this address; off by default.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// The admin API's bearer token, read from this file (or set PORTCULLIS_ADMIN_TOKEN).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Another host name the admin API answers to (besides its address and localhost).
    #[arg(long)]
    pub admin_host: Vec<String>,
    /// How the admin API shows principals (API keys, user ids): a short keyed hash, or
    /// nothing; never in clear.
    #[arg(long, value_enum, default_value_t = Redaction::Hash)]
    pub admin_principals: Redaction,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Connections served at once; past it the longest-idle connection makes room. Capped
    /// below the process's open-file limit.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's head once it started it.
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a request may take to get its response head (upstream included), and a
    /// response may wait for the client to read it.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// The largest request head, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: u64,
}

/// How the admin API shows principals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Redaction {
    /// `principal:#3f9a1c2b7d4e`: a keyed hash, the same for one key while the server runs.
    Hash,
    /// `principal:<redacted>`.
    Redact,
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
    /// Ask a running `portcullis serve` (its --admin-listen address) instead of opening the
    /// store.
    #[arg(long)]
    pub server: Option<SocketAddr>,
    #[command(flatten)]
    pub token: TokenArgs,
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
    /// Reset on a running `portcullis serve` (its --admin-listen address) instead of opening
    /// the store.
    #[arg(long)]
    pub server: Option<SocketAddr>,
    #[command(flatten)]
    pub token: TokenArgs,
}

/// The admin API's token, for --server.
#[derive(Args)]
pub struct TokenArgs {
    /// A file holding the admin API's bearer token (or set PORTCULLIS_ADMIN_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}
