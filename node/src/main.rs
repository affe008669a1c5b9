//! The `meshlog` binary: parse the command line and hand over to [`meshlog::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    let cli = meshlog::cli::Cli::parse();
    let filter = match &cli.log {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter())),
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        meshlog::cli::LogFormat::Text => logs.init(),
        meshlog::cli::LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(meshlog::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`meshlog consume t | head`): it has what it wanted.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether an error is a write to a closed pipe, wherever it sits in the chain.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, each said once. The node's errors name their
/// cause in their own message (a `to_string()` at a boundary keeps it) and also return
/// it as their `source()`, which `{:#}` would print a second time.
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Keep freed memory in the process instead of handing it back to the kernel at once.
///
/// Every produce, replication message and fetch answer moves buffers of a few hundred KiB.
/// glibc's defaults serve those with `mmap` or return them with `madvise`/`munmap` on free,
/// so the next one faults in fresh zeroed pages: in a 3-node `acks=all` run page faults
/// and `madvise` took about 15% of each node's CPU. Serving blocks under 512 KiB from the
/// heap and trimming a heap only past 128 MiB free keeps those buffers in the process
/// (ARCHITECTURE.md, "Memory"). Larger blocks still come from `mmap`, and the heap grows
/// without padding: with a 16 MiB threshold and a 16 MiB `M_TOP_PAD` a fresh idle node
/// was 42 MiB resident instead of 16 MiB, and no faster. An operator's own `MALLOC_*` or
/// `GLIBC_TUNABLES` settings win: nothing is changed when one is set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // the one unsafe call of the node: glibc allocator parameters
fn keep_freed_memory() {
    let operator_tuned = std::env::vars_os().any(|(k, _)| {
        let k = k.to_string_lossy();
        k.starts_with("MALLOC_") || k == "GLIBC_TUNABLES"
    });
    if operator_tuned {
        return;
    }
    // SAFETY: mallopt only changes allocator parameters; it runs first in main, before
    // any other thread exists, and its failure (return 0) leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
#[allow(unsafe_code)] // the one unsafe call of the node: glibc allocator parameters
fn keep_freed_memory() {}

#[cfg(test)]
mod tests {
    /// A cause the error's own message already names is not repeated; a context is kept.
    #[test]
    fn each_cause_is_said_once() {
        let e = meshlog::storage::StorageError::io("flush", std::io::Error::other("disk on fire"));
        let e = anyhow::Error::new(e).context("cannot start the node");
        assert_eq!(super::report(&e), "cannot start the node: storage I/O error during flush: disk on fire");
    }
}
