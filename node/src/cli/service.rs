//! `meshlog service register|deregister|discover|list`: the mesh as a service registry.

use super::{output, ServerArgs, ViewArgs};
use crate::client::Client;
use meshlog_protocol::mesh::ServiceInstance;
use meshlog_protocol::messages::ServiceRegistration;
use std::time::Duration;

/// Service subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Register an endpoint (renew with the same --instance-id, or stay with --keepalive).
    Register {
        /// Service name.
        name: String,
        /// Where the instance is reached (a URL).
        #[arg(long)]
        endpoint: String,
        /// Instance id (default: the endpoint).
        #[arg(long)]
        instance_id: Option<String>,
        /// The registration lapses this long after its last renewal.
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
        /// Metadata as key=value, repeatable.
        #[arg(long = "meta", value_parser = super::topic::parse_kv)]
        meta: Vec<(String, String)>,
        /// Stay in the foreground renewing every third of the TTL until Ctrl-C, then deregister.
        #[arg(long)]
        keepalive: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Remove a registration made through the same node.
    Deregister {
        /// Service name.
        name: String,
        /// Instance id (the endpoint, unless one was given at registration).
        #[arg(long)]
        instance_id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the live endpoints of a service, from any node.
    Discover {
        /// Service name.
        name: String,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List every live service instance in the mesh.
    List {
        #[command(flatten)]
        view: ViewArgs,
    },
}

/// Run a service subcommand.
pub async fn run(cmd: ServiceCommand) -> anyhow::Result<()> {
    match cmd {
        ServiceCommand::Register {
            name,
            endpoint,
            instance_id,
            ttl_ms,
            meta,
            keepalive,
            view: ViewArgs { server, json },
        } => {
            let client = server.connect().await?;
            let reg =
                ServiceRegistration { name, instance_id, endpoint, ttl_ms, meta: meta.into_iter().collect() };
            let inst = client.register_service(reg.clone()).await?;
            if json {
                output::json(&inst)?;
            } else {
                println!(
                    "Registered {} instance {} at {} (ttl {} ms).",
                    inst.name, inst.instance_id, inst.endpoint, inst.ttl_ms
                );
            }
            if keepalive {
                keep_alive(&client, reg, &inst).await?;
            }
            Ok(())
        }
        ServiceCommand::Deregister { name, instance_id, server } => {
            server.connect().await?.deregister_service(&name, &instance_id).await?;
            println!("Deregistered {name} instance {instance_id}.");
            Ok(())
        }
        ServiceCommand::Discover { name, view: ViewArgs { server, json } } => {
            print_instances(&server.connect().await?.discover_service(&name).await?, json)
        }
        ServiceCommand::List { view: ViewArgs { server, json } } => {
            print_instances(&server.connect().await?.list_services().await?, json)
        }
    }
}

async fn keep_alive(client: &Client, reg: ServiceRegistration, inst: &ServiceInstance) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_millis((reg.ttl_ms / 3).max(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = client.register_service(reg.clone()).await {
                    eprintln!("renewal failed (will retry): {e}");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.deregister_service(&inst.name, &inst.instance_id).await?;
    eprintln!("Deregistered {} instance {}.", inst.name, inst.instance_id);
    Ok(())
}

fn print_instances(list: &[ServiceInstance], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let meta: Vec<String> = i.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                i.name.clone(),
                i.instance_id.clone(),
                i.endpoint.clone(),
                format!("{}", i.expires_in_ms),
                i.node.to_string(),
                meta.join(","),
            ]
        })
        .collect();
    output::table(&["SERVICE", "INSTANCE", "ENDPOINT", "EXPIRES-IN-MS", "NODE", "META"], &rows);
    Ok(())
}
