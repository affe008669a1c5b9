//! `meshlog mesh init|issue|kafka-login`: a closed mesh's credentials.
//!
//! `init DIR` creates a new mesh authority and its first node and client credentials;
//! `issue DIR --role R` signs another credential with the same authority (to rotate a
//! credential: issue, roll it out, then revoke the old serial with
//! `--revoke-credential`); `kafka-login FILE` prints the Kafka client settings (SCRAM
//! user name and password) of a client credential.

use crate::network::admission::{AUTHORITY_FILE, CLIENT_CREDENTIAL_FILE, NODE_CREDENTIAL_FILE};
use crate::network::{Authority, Credential, PeerRole};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `meshlog mesh ...`
#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Create a closed mesh's credentials in DIR: authority.key (keep it offline),
    /// node.credential (for every node) and client.credential (for clients).
    Init {
        /// Directory to create (must not hold credentials already).
        dir: PathBuf,
        /// Days the credentials are valid (default: no expiry).
        #[arg(long)]
        valid_days: Option<u64>,
    },
    /// Issue another credential signed by DIR/authority.key.
    Issue {
        /// The mesh directory (with authority.key).
        dir: PathBuf,
        /// node or client.
        #[arg(long, value_parser = parse_role)]
        role: PeerRole,
        /// Where to write it (default: DIR/ROLE-SERIAL.credential).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days the credential is valid (default: no expiry).
        #[arg(long)]
        valid_days: Option<u64>,
    },
    /// Print the Kafka client settings that log in with a client credential
    /// (librdkafka properties: security.protocol, sasl.mechanism, sasl.username,
    /// sasl.password). The password is derived from the credential's key: keep the
    /// output as secret as the file.
    KafkaLogin {
        /// The client credential file.
        file: PathBuf,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
        mechanism: String,
    },
}

fn parse_role(s: &str) -> Result<PeerRole, String> {
    PeerRole::parse(s).ok_or_else(|| format!("'{s}' is not a role (node or client)"))
}

fn days(d: Option<u64>) -> Option<Duration> {
    d.map(|d| Duration::from_secs(d.saturating_mul(86_400)))
}

/// Run a `mesh` command.
pub fn run(cmd: MeshCommand) -> anyhow::Result<()> {
    match cmd {
        MeshCommand::Init { dir, valid_days } => init(&dir, days(valid_days)),
        MeshCommand::Issue { dir, role, out, valid_days } => {
            let authority = Authority::load(&dir.join(AUTHORITY_FILE))?;
            let credential = authority.issue(role, days(valid_days))?;
            let out = out
                .unwrap_or_else(|| dir.join(format!("{}-{}.credential", role.as_str(), credential.serial())));
            credential.save(&out)?;
            println!("issued {} credential {} in {}", role.as_str(), credential.serial(), out.display());
            Ok(())
        }
        MeshCommand::KafkaLogin { file, mechanism } => kafka_login(&file, &mechanism),
    }
}

fn kafka_login(file: &Path, mechanism: &str) -> anyhow::Result<()> {
    let credential = Credential::load(file)?;
    let Some(username) = credential.kafka_username() else {
        anyhow::bail!(
            "{} has no Kafka login: it is a node credential, or a client credential issued before Kafka logins existed (issue a new one: meshlog mesh issue DIR --role client)",
            file.display()
        );
    };
    println!("security.protocol=SASL_PLAINTEXT");
    println!("sasl.mechanism={mechanism}");
    println!("sasl.username={username}");
    println!("sasl.password={}", credential.kafka_password()?);
    Ok(())
}

fn init(dir: &Path, valid_for: Option<Duration>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    if dir.join(AUTHORITY_FILE).exists() {
        anyhow::bail!("{} already holds a mesh authority; use `meshlog mesh issue`", dir.display());
    }
    let authority = Authority::generate();
    let node = authority.issue(PeerRole::Node, valid_for)?;
    let client = authority.issue(PeerRole::Client, valid_for)?;
    authority.save(&dir.join(AUTHORITY_FILE))?;
    node.save(&dir.join(NODE_CREDENTIAL_FILE))?;
    client.save(&dir.join(CLIENT_CREDENTIAL_FILE))?;
    println!("mesh {} created in {}", authority.mesh_fingerprint(), dir.display());
    println!("  {AUTHORITY_FILE}      signs credentials: keep it offline");
    println!("  {NODE_CREDENTIAL_FILE}    serial {}: meshlog node --node-credential FILE", node.serial());
    println!(
        "  {CLIENT_CREDENTIAL_FILE}  serial {}: client commands --client-credential FILE",
        client.serial()
    );
    Ok(())
}
