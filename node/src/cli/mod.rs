//! The `meshlog` command line: one binary for the node and every client command, in
//! the spirit of Kafka's tools and rpk. Human output by default, `--json` for data.
//! Exit codes: 0 success, 1 a failed operation (the message names the problem), 2 bad
//! usage (from clap).

mod bench;
mod bench_group;
mod bench_mesh;
mod cluster;
mod consume;
mod group;
mod health;
mod mesh;
mod node_cmd;
mod output;
mod probe;
mod produce;
mod service;
mod topic;

use crate::client::Client;
use crate::config::DEFAULT_PORT;
use crate::network::Multiaddr;
use clap::{Parser, Subcommand};

/// meshlog: a partitioned, replicated log run by a mesh of equal peers.
#[derive(Debug, Parser)]
#[command(name = "meshlog", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (e.g. info, debug, meshlog=debug); RUST_LOG also works. Default:
    /// info for `node`, warn for client commands.
    #[arg(long, global = true, env = "MESHLOG_LOG")]
    pub log: Option<String>,
    /// Log format: `text` for people, `json` (one object per line, with the span fields
    /// such as topic and partition) for log shippers.
    #[arg(long, global = true, env = "MESHLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields, and the current spans.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a node on embedded defaults, overridden by a config file, env and flags.
    Node(node_cmd::NodeArgs),
    /// Create, list and describe topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write records read from stdin, one per line.
    Produce(produce::ProduceArgs),
    /// Print records, one value per line.
    Consume(consume::ConsumeArgs),
    /// List and describe consumer groups (members, offsets, lag); reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Register, discover and list service endpoints (a registry with no server).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Show the mesh: members, addresses, last seen, and who owns which partition.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Print a new random pre-shared key for a closed mesh (save it, pass --psk-file).
    MeshKey,
    /// Create a closed mesh's credentials (node and client roles) and issue more.
    #[command(subcommand)]
    Mesh(mesh::MeshCommand),
    /// Measure produce and consume throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// GET an HTTP URL and exit 0 on a 2xx answer (a health check for images without curl).
    Probe(probe::ProbeArgs),
}

/// The node to ask and how to print its answer: the flags of every command that shows
/// something.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which node a client command talks to.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Any node: a multiaddr (with or without /p2p/PEERID) or HOST:PORT (`10.0.0.5:9494`,
    /// `[::1]:9494`, `node-1.example:9494`); several (comma-separated or repeated) are tried
    /// in order until one answers.
    #[arg(
        long,
        env = "MESHLOG_SERVER",
        value_delimiter = ',',
        default_values_t = [default_server()],
        value_parser = parse_server
    )]
    pub server: Vec<Multiaddr>,
    /// The mesh's pre-shared key file, if the mesh is closed.
    #[arg(long, env = "MESHLOG_PSK_FILE")]
    pub psk_file: Option<std::path::PathBuf>,
    /// A closed mesh's client credential (`meshlog mesh init DIR` writes
    /// DIR/client.credential).
    #[arg(long, env = "MESHLOG_CLIENT_CREDENTIAL")]
    pub client_credential: Option<std::path::PathBuf>,
    /// Keep this client's key in FILE (created on first use), so a mesh with an
    /// allowlist (`--allow-peer`) admits it; without it every run has a new key.
    #[arg(long, env = "MESHLOG_IDENTITY")]
    pub identity: Option<std::path::PathBuf>,
}

/// A server address as a user writes it: a multiaddr, or `HOST:PORT` (an IPv4 or
/// bracketed IPv6 address, or a DNS name), or a bare host on the default port.
pub fn parse_server(s: &str) -> Result<Multiaddr, String> {
    let s = s.trim();
    if s.starts_with('/') {
        return s.parse::<Multiaddr>().map_err(|e| format!("'{s}' is not a multiaddr: {e}"));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.starts_with('[')) => {
            (h, p.parse::<u16>().map_err(|_| format!("'{s}': '{p}' is not a port (1-65535)"))?)
        }
        _ => (s, DEFAULT_PORT),
    };
    if port == 0 {
        return Err(format!("'{s}': port 0 cannot be dialled"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let text = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => format!("/ip4/{ip}/tcp/{port}"),
        Ok(std::net::IpAddr::V6(ip)) => format!("/ip6/{ip}/tcp/{port}"),
        Err(_) if is_dns_name(host) => format!("/dns/{host}/tcp/{port}"),
        Err(_) => return Err(format!("'{s}' is neither a multiaddr nor HOST:PORT")),
    };
    text.parse::<Multiaddr>().map_err(|e| format!("'{s}': {e}"))
}

/// Whether `host` is a plausible DNS name (letters, digits, '-', '.'; no empty label).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn default_server() -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{DEFAULT_PORT}").parse().unwrap_or_else(|_| Multiaddr::empty())
}

impl ServerArgs {
    /// The key, identity and credential files, read.
    pub fn options(&self) -> anyhow::Result<crate::client::ClientOptions> {
        use crate::network::{identity, Credential, PeerRole, Psk};
        let credential = self.client_credential.as_deref().map(Credential::load).transpose()?;
        if let (Some(c), Some(path)) = (&credential, &self.client_credential) {
            if c.role() != PeerRole::Client {
                // A node credential works, but it should stay on the nodes.
                tracing::warn!(path = %path.display(), "using a node credential as a client's");
            }
        }
        Ok(crate::client::ClientOptions {
            psk: self.psk_file.as_deref().map(Psk::load).transpose()?,
            identity: self.identity.as_deref().map(identity::load_or_create_file).transpose()?,
            credential,
        })
    }

    /// Connect, naming the address on failure.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let opts = self.options()?;
        let mut errors = Vec::new();
        for addr in &self.server {
            match Client::connect_opts(addr, &opts).await {
                Ok(c) => return Ok(c),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        anyhow::bail!("cannot connect to a meshlog node ({})", errors.join("; "))
    }
}

impl Cli {
    /// The log filter to use when neither `--log` nor `RUST_LOG` is given.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Node(_) => "info",
            _ => "warn",
        }
    }
}

/// Run the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(args) => node_cmd::run(args).await,
        Command::Topic(cmd) => topic::run(cmd).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Consume(args) => consume::run(args).await,
        Command::Group(cmd) => group::run(cmd).await,
        Command::Service(cmd) => service::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::MeshKey => {
            print!("{}", crate::network::Psk::generate_text());
            Ok(())
        }
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Mesh(cmd) => mesh::run(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_a_multiaddr_or_host_and_port() {
        let ok = |s: &str| parse_server(s).map(|m| m.to_string());
        assert_eq!(ok("/ip4/10.0.0.5/tcp/9000").unwrap(), "/ip4/10.0.0.5/tcp/9000");
        assert_eq!(ok("10.0.0.5:9000").unwrap(), "/ip4/10.0.0.5/tcp/9000");
        assert_eq!(ok("[::1]:9000").unwrap(), "/ip6/::1/tcp/9000");
        assert_eq!(ok("node-1.example:9000").unwrap(), "/dns/node-1.example/tcp/9000");
        assert_eq!(ok("localhost").unwrap(), format!("/dns/localhost/tcp/{DEFAULT_PORT}"));
        assert_eq!(ok("10.0.0.5").unwrap(), format!("/ip4/10.0.0.5/tcp/{DEFAULT_PORT}"));
        for bad in ["10.0.0.5:http", "10.0.0.5:0", "10.0.0.5:70000", "bad host:1", "/not/a/multiaddr", ""] {
            assert!(parse_server(bad).is_err(), "{bad:?} was taken");
        }
    }
}
