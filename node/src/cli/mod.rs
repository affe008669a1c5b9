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
mod mesh;
mod node_cmd;
mod output;
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
    #[command(subcommand)]
    command: Command,
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
}

/// Which node a client command talks to.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Multiaddr of any node, with or without /p2p/PEERID; several (comma-separated or
    /// repeated) are tried in order until one answers.
    #[arg(long, env = "MESHLOG_SERVER", value_delimiter = ',', default_values_t = [default_server()])]
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
        Command::Mesh(cmd) => mesh::run(cmd),
    }
}
