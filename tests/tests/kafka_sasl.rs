//! A closed mesh's Kafka listener requires SASL (DESIGN 15): Kafka clients log in with
//! a client credential of the mesh by SCRAM (the settings `meshlog mesh kafka-login`
//! prints), and any node checks the login without holding a client secret. kcat and
//! confluent-kafka produce and consume with the right login, through both nodes; a wrong
//! password, a client without SASL and a revoked credential are refused; the node keeps
//! serving the right login after them.
//!
//! kcat and confluent-kafka are required (`.ci/run` installs them); set
//! `MESHLOG_SKIP_KAFKA_CLIENTS=1` to skip.

use meshlog_tests::kafka_clients::{confluent_kafka, run_bounded, KCAT_BUDGET};
use meshlog_tests::{members_up, meshlog_bin, wait_until, NodeProcess, LONG_BUDGET};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long (seconds) kcat waits for metadata, a login expected to be refused included.
const METADATA_WAIT_S: &str = "8";

fn meshlog(args: &[&str]) -> String {
    let out = Command::new(meshlog_bin()).args(args).output().unwrap();
    assert!(out.status.success(), "meshlog {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The client settings `meshlog mesh kafka-login` prints for `credential`.
fn kafka_login(credential: &Path, mechanism: &str) -> Vec<String> {
    let out = meshlog(&["mesh", "kafka-login", &credential.display().to_string(), "--mechanism", mechanism]);
    let settings: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(settings.len(), 4, "{out}");
    assert!(settings.contains(&"security.protocol=SASL_PLAINTEXT".to_string()), "{out}");
    settings
}

/// The same settings with another password.
fn with_password(settings: &[String], password: &str) -> Vec<String> {
    settings
        .iter()
        .map(
            |s| if s.starts_with("sasl.password=") { format!("sasl.password={password}") } else { s.clone() },
        )
        .collect()
}

/// kcat with `settings` as `-X` options.
fn kcat(settings: &[String], args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut cmd = Command::new("kcat");
    for s in settings {
        cmd.args(["-X", s]);
    }
    cmd.args(args);
    run_bounded(&mut cmd, stdin, KCAT_BUDGET)
}

fn confluent(broker: &str, topic: &str, mode: &str, settings: &[String]) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/confluent_sasl.py");
    let mut cmd = Command::new("python3");
    cmd.args([script, broker, topic, "30", mode]).args(settings);
    run_bounded(&mut cmd, b"", Duration::from_secs(180))
}

/// Whether kcat could list the cluster's metadata with `settings` (it fails when the
/// listener refuses the login or closes the connection).
fn kcat_lists(broker: &str, settings: &[String]) -> bool {
    let out = kcat(settings, &["-L", "-b", broker, "-m", METADATA_WAIT_S], b"");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("brokers")
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_clients_log_in_with_the_mesh_client_credential_and_nothing_else() {
    if !confluent_kafka() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let mesh = keys.path();
    meshlog(&["mesh", "init", &mesh.display().to_string()]);
    let revoked = mesh.join("revoked.credential");
    let issued = meshlog(&[
        "mesh",
        "issue",
        &mesh.display().to_string(),
        "--role",
        "client",
        "--out",
        &revoked.display().to_string(),
    ]);
    let serial =
        issued.split_whitespace().nth(3).expect("issued client credential SERIAL in FILE").to_string();
    let node_cred = mesh.join("node.credential").display().to_string();
    let client_cred = mesh.join("client.credential").display().to_string();
    let closed = ["--node-credential", node_cred.as_str(), "--revoke-credential", serial.as_str()];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = NodeProcess::start_with(dirs[0].path(), &closed);
    let b_args: Vec<&str> = closed.iter().copied().chain(["--bootstrap", a.addr.as_str()]).collect();
    let b = NodeProcess::start_with(dirs[1].path(), &b_args);
    wait_until("a closed mesh of two", LONG_BUDGET, || async {
        (members_up(&a.addr, &["--client-credential", &client_cred]) == Some(2)).then_some(())
    })
    .await;
    let (a_kafka, b_kafka) = (a.kafka.clone().unwrap(), b.kafka.clone().unwrap());
    let login = kafka_login(&mesh.join("client.credential"), "SCRAM-SHA-256");

    println!("phase 1: kcat with the login (SCRAM-SHA-256) produces through a, reads through b");
    let lines: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    let out =
        kcat(&login, &["-P", "-b", &a_kafka, "-t", "sasl", "-K", ":", "-X", "acks=all"], lines.as_bytes());
    assert!(out.status.success(), "kcat -P: {}", String::from_utf8_lossy(&out.stderr));
    let out = kcat(
        &login,
        &["-C", "-b", &b_kafka, "-t", "sasl", "-o", "beginning", "-e", "-q", "-f", "%k=%s\n"],
        b"",
    );
    assert!(out.status.success(), "kcat -C: {}", String::from_utf8_lossy(&out.stderr));
    let read: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(read.len(), 20, "{read:?}");
    assert!(read.contains(&"k7=v7"), "{read:?}");

    println!("phase 2: confluent-kafka with the login (SCRAM-SHA-512) produces and consumes in a group");
    let login512 = kafka_login(&mesh.join("client.credential"), "SCRAM-SHA-512");
    let out = confluent(&b_kafka, "sasl-py", "ok", &login512);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = meshlog_consume_closed(&a, &client_cred, "sasl-py", 30);
    assert_eq!(got, 30, "the meshlog client reads what confluent-kafka wrote");

    println!("phase 3: a wrong password, no SASL at all, and a revoked credential are refused");
    let wrong = with_password(&login, "not-the-password");
    assert!(!kcat_lists(&a_kafka, &wrong), "kcat with a wrong password was served");
    let out = confluent(&a_kafka, "sasl-py", "refused", &with_password(&login512, "nope"));
    assert!(
        out.status.success(),
        "confluent-kafka with a wrong password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(!kcat_lists(&a_kafka, &[]), "kcat without SASL was served by a closed mesh");
    let revoked_login = kafka_login(&revoked, "SCRAM-SHA-256");
    assert!(!kcat_lists(&b_kafka, &revoked_login), "a revoked credential was served");

    println!("phase 4: the nodes keep serving the right login");
    assert!(kcat_lists(&a_kafka, &login), "a refused login broke the listener");
    assert!(kcat_lists(&b_kafka, &login));
    drop((a, b));
    println!(
        "figure: closed-mesh Kafka SASL: 20 kcat + 30 confluent-kafka records through the login, refused logins served 0 of 4 (wrong password x2, no SASL, revoked)"
    );
}

/// `meshlog consume` of `topic` with the client credential: how many records it read.
fn meshlog_consume_closed(node: &NodeProcess, credential: &str, topic: &str, n: usize) -> usize {
    let n = n.to_string();
    let args = [
        "consume",
        topic,
        "--from-beginning",
        "--max-messages",
        &n,
        "--timeout-ms",
        "30000",
        "--client-credential",
        credential,
    ];
    let out = node.cli(&args, None);
    assert_eq!(out.code, 0, "meshlog consume: {}", out.stderr);
    out.stdout.lines().count()
}
