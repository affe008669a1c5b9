//! `meshlog probe URL`: an HTTP GET that exits 0 on a 2xx answer and 1 otherwise, so a
//! container built `FROM scratch` (no curl, no shell) can run its own health check:
//! `HEALTHCHECK CMD ["/meshlog", "probe", "http://127.0.0.1:9644/readyz"]`.

use std::time::Duration;

/// Flags of `meshlog probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET (plain http; e.g. http://127.0.0.1:9644/readyz).
    #[arg(default_value = "http://127.0.0.1:9644/readyz")]
    url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2_000)]
    timeout_ms: u64,
}

/// GET the URL; Ok on 2xx, an error naming the status or the failure otherwise.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(args.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(&args.url).call().map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("{}: {status}", args.url)
    }
}
