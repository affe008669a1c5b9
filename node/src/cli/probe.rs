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

/// GET the URL (with the admin port's own one-request HTTP/1 client); Ok on 2xx, an
/// error naming the status or the failure otherwise.
pub async fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let budget = Duration::from_millis(args.timeout_ms);
    let answer = crate::admin::client::get(&args.url, budget)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    let status = answer.status;
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("{}: {status}", args.url)
    }
}
