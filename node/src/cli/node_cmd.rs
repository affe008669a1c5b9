//! `meshlog node`: start a node and serve until Ctrl-C or SIGTERM.

use crate::config::NodeConfig;
use crate::server;
use std::path::PathBuf;

/// Flags of `meshlog node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Optional TOML config file (strict: unknown keys are errors).
    #[arg(long, env = "MESHLOG_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./meshlog-data).
    #[arg(long, env = "MESHLOG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen multiaddr, repeatable (default: /ip4/0.0.0.0/tcp/9494).
    #[arg(long, env = "MESHLOG_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// The HTTP admin port (metrics, probes, status page, service-registry API) as
    /// host:port, or `none` (default: 127.0.0.1:9644).
    #[arg(long, env = "MESHLOG_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// The Kafka listener as host:port, or `none` (default: 0.0.0.0:9092).
    #[arg(long, env = "MESHLOG_KAFKA_LISTEN")]
    kafka_listen: Option<String>,
    /// The HOST:PORT Kafka clients are told to reach this node at (default: the Kafka
    /// listen address, with 0.0.0.0 replaced by 127.0.0.1).
    #[arg(long, env = "MESHLOG_KAFKA_ADVERTISE")]
    kafka_advertise: Option<String>,
    /// `leader`: Kafka clients are sent to each partition's leader (every node is a
    /// broker); `through-me`: this node answers for the whole mesh, for a client that
    /// can reach only it (default: leader).
    #[arg(long, env = "MESHLOG_KAFKA_ROUTE", value_enum)]
    kafka_route: Option<crate::config::KafkaRoute>,
    /// `sasl`: Kafka clients must log in with a client credential of this closed mesh
    /// (SCRAM; see `meshlog mesh kafka-login`); `none`: anyone who reaches the listener
    /// is served (default: sasl in a closed mesh, none in an open one).
    #[arg(long, env = "MESHLOG_KAFKA_AUTH", value_enum)]
    kafka_auth: Option<crate::config::KafkaAuth>,
    /// Join the mesh through this node (multiaddr), repeatable.
    #[arg(long, env = "MESHLOG_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Do not discover or announce on the LAN by mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Close the mesh with this pre-shared key file (see `meshlog mesh-key`).
    #[arg(long, env = "MESHLOG_PSK_FILE")]
    psk_file: Option<PathBuf>,
    /// Only let this PeerId connect (repeatable; this node is always allowed).
    #[arg(long = "allow-peer", env = "MESHLOG_ALLOW_PEERS", value_delimiter = ',')]
    allow_peers: Vec<String>,
    /// This node's credential for a closed mesh (`meshlog mesh init DIR` writes
    /// DIR/node.credential): only peers proving this mesh's credentials are admitted.
    #[arg(long, env = "MESHLOG_NODE_CREDENTIAL")]
    node_credential: Option<PathBuf>,
    /// Refuse the credential with this serial (repeatable; closed mesh).
    #[arg(long = "revoke-credential", env = "MESHLOG_REVOKED_CREDENTIALS", value_delimiter = ',')]
    revoked_credentials: Vec<String>,
}

/// Build the effective config: defaults < file < env < flags.
fn effective(args: NodeArgs) -> anyhow::Result<NodeConfig> {
    let mut cfg = NodeConfig::load(args.config.as_deref())?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if !args.listen.is_empty() {
        cfg.listen = args.listen;
    }
    if let Some(h) = args.http_listen {
        cfg.http_listen = h;
    }
    if let Some(k) = args.kafka_listen {
        cfg.kafka_listen = k;
    }
    if args.kafka_advertise.is_some() {
        cfg.kafka_advertise = args.kafka_advertise;
    }
    if let Some(r) = args.kafka_route {
        cfg.kafka_route = r;
    }
    if args.kafka_auth.is_some() {
        cfg.kafka_auth = args.kafka_auth;
    }
    if !args.bootstrap.is_empty() {
        cfg.bootstrap = args.bootstrap;
    }
    if args.no_mdns {
        cfg.mdns = false;
    }
    if args.psk_file.is_some() {
        cfg.psk_file = args.psk_file;
    }
    if !args.allow_peers.is_empty() {
        cfg.allow_peers = args.allow_peers;
    }
    if args.node_credential.is_some() {
        cfg.node_credential = args.node_credential;
    }
    if !args.revoked_credentials.is_empty() {
        cfg.revoked_credentials = args.revoked_credentials;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// Run a node in the foreground.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let cfg = effective(args)?;
    tracing::info!(config = ?cfg, "effective configuration");
    let node = server::start(cfg).await?;
    println!("meshlog node {} started", node.peer_id());
    // Before the listen lines: a harness that reads up to the first of those has seen it.
    if let Some(a) = node.http_addr() {
        println!("admin on http://{a}");
    }
    if let Some(a) = node.kafka_addr() {
        println!("kafka on {a}");
    }
    for a in node.listen_addrs() {
        println!("listening on {a}");
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
