//! Docker harness: one `meshlog node` per container on a private bridge network, so tests
//! can cut a node off (`docker network disconnect`), freeze it (`docker pause`), crash it
//! (`docker kill -s KILL`) and restart it with its data, and so nodes can find each other
//! by mDNS (multicast passes between containers of one user-defined bridge network, and
//! not between networks, so parallel tests do not see each other's nodes).
//!
//! What it owns: the image (built from the dev binary `target/debug/meshlog` by
//! `scripts/docker-test-image.sh`: the binary plus the shared libraries `ldd` lists, tagged
//! by a content hash, so nothing is rebuilt for Docker), uniquely named networks and
//! containers, and their removal. It talks to Docker only through the `docker` CLI, and
//! every call has a deadline after which the CLI is killed and the error names the
//! command. It never sleeps and then asserts: it polls `docker logs` every 100 ms up to
//! a named budget.
//!
//! What it must not do: touch containers, networks or images it did not label
//! `meshlog-test=1`, or skip silently in CI (`require_docker` panics when `CI` is set).
//!
//! Everything it creates carries the labels `meshlog-test=1`, `meshlog-test.owner`
//! (pid namespace, pid and start time of the test process) and `meshlog-test.created`
//! (Unix seconds). [`cleanup_stale`] (run once per process before the first image use)
//! removes what a killed test run left behind: resources whose owner process is gone,
//! or older than [`STALE_AFTER`].

use crate::{meshlog_bin, CliOutput};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deadline of one docker control command (run, start, kill, logs, network ...): generous
/// because the daemon shares two cores with builds.
pub const DOCKER_CLI_BUDGET: Duration = Duration::from_secs(60);
/// Deadline of one client command run in a container (a produce of many records).
pub const CLIENT_BUDGET: Duration = Duration::from_secs(180);
/// Deadline of `scripts/docker-test-image.sh` (tar + `docker import` of ~35 MB).
pub const IMAGE_BUILD_BUDGET: Duration = Duration::from_secs(300);
/// Resources labelled `meshlog-test=1` older than this are leftovers whatever their owner.
pub const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);
/// The node's listen port inside every container.
pub const NODE_PORT: u16 = 9494;
/// How often conditions on docker output are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The label every resource of this harness carries.
pub const LABEL: &str = "meshlog-test=1";
/// The label naming the owning test process: `<pid namespace inode>:<pid>:<start time>`.
pub const OWNER_LABEL: &str = "meshlog-test.owner";
/// The label carrying a resource's creation time, in Unix seconds.
pub const CREATED_LABEL: &str = "meshlog-test.created";

/// Run `docker ARGS` (optionally feeding `stdin`), killing it after `budget`.
/// `Err` only when the CLI could not be started or timed out; a non-zero exit is in the
/// returned code.
pub fn docker(args: &[&str], stdin: Option<&[u8]>, budget: Duration) -> Result<CliOutput, String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_with_deadline(cmd, &format!("docker {}", args.join(" ")), stdin, budget)
}

/// Run `docker ARGS` with [`DOCKER_CLI_BUDGET`]; `Err` (naming the command and its stderr)
/// unless it exits 0; `Ok` carries the trimmed stdout.
pub fn docker_ok(args: &[&str]) -> Result<String, String> {
    let out = docker(args, None, DOCKER_CLI_BUDGET)?;
    if out.code != 0 {
        return Err(format!("`docker {}` exited {}: {}", args.join(" "), out.code, out.stderr.trim()));
    }
    Ok(out.stdout.trim().to_string())
}

/// Spawn `cmd` in its own process group and wait for it up to `budget`; on expiry kill
/// the whole group (a script's children too, so their pipes close) and report `what`.
fn run_with_deadline(
    mut cmd: Command,
    what: &str,
    stdin: Option<&[u8]>,
    budget: Duration,
) -> Result<CliOutput, String> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run `{what}`: {e}"))?;
    // Readers and writer on threads: a full pipe must never block the deadline loop.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let status = wait_deadline(&mut child, budget);
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(code) => Ok(CliOutput { code, stdout, stderr }),
        None => Err(format!(
            "`{what}` did not finish within {budget:?} and was killed; stderr: {}",
            stderr.trim()
        )),
    }
}

/// Read a pipe to the end on a thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// The exit code (-1 for a signal), or `None` after killing the process group at `budget`.
fn wait_deadline(child: &mut Child, budget: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.code().unwrap_or(-1)),
            Ok(None) if started.elapsed() < budget => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // The group id is the child's pid (process_group(0)); std has no killpg.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// `Ok` if the `docker` CLI runs and its daemon answers; otherwise why not.
pub fn docker_available() -> Result<(), String> {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            let v = docker(&["version", "--format", "{{.Server.Version}}"], None, DOCKER_CLI_BUDGET)?;
            match (v.code, v.stdout.trim()) {
                (0, ver) if !ver.is_empty() => Ok(()),
                _ => Err(format!("`docker version` exited {}: {}", v.code, v.stderr.trim())),
            }
        })
        .clone()
}

/// Whether a Docker test can run. Without Docker: panics if the environment variable
/// `CI` is set (CI must fail loudly, never skip silently); otherwise prints
/// `SKIP: docker unavailable: <why>` and returns false, so the test returns early.
pub fn require_docker() -> bool {
    match docker_available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("docker unavailable and CI is set, so this test may not be skipped: {why}")
        }
        Err(why) => {
            eprintln!("SKIP: docker unavailable: {why}");
            println!("SKIP: docker unavailable: {why}");
            false
        }
    }
}

/// The image tag (`meshlog-test:<hash>`), built from [`meshlog_bin`] by
/// `scripts/docker-test-image.sh` once per process (the script itself reuses an image whose
/// content hash matches, so this is fast after the first build). Also removes stale
/// leftovers of killed runs first. Panics with the script's error if the build fails.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            cleanup_stale();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker-test-image.sh");
            let mut cmd = Command::new("bash");
            cmd.arg(&script).arg(meshlog_bin());
            let what = format!("{} {}", script.display(), meshlog_bin().display());
            let out = run_with_deadline(cmd, &what, None, IMAGE_BUILD_BUDGET)
                .unwrap_or_else(|e| panic!("building the test image: {e}"));
            let tag = out.stdout.lines().last().unwrap_or("").trim().to_string();
            assert!(
                out.code == 0 && tag.starts_with("meshlog-test:"),
                "`{what}` exited {} without a tag: {}",
                out.code,
                out.stderr.trim()
            );
            tag
        })
        .clone()
}

/// This process's identity as an owner label: `<pid namespace>:<pid>:<start time>`, so a
/// later run can tell whether the owner is still alive (and not a reused pid).
fn owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!("{}:{pid}:{}", pid_namespace(), proc_start_time(pid).unwrap_or_default())
    })
}

/// The inode of this process's pid namespace (`pid:[4026531836]` -> `4026531836`).
fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().chars().filter(char::is_ascii_digit).collect())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), `None` if the
/// process does not exist.
fn proc_start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `--label` flags every resource of this process carries.
fn label_args() -> Vec<String> {
    let now = unix_now_secs();
    [LABEL.to_string(), format!("{OWNER_LABEL}={}", owner()), format!("{CREATED_LABEL}={now}")]
        .into_iter()
        .flat_map(|l| ["--label".to_string(), l])
        .collect()
}

/// A name unique across test processes and threads: `mlt-<run>-<n>-<name>`, where `run`
/// is this process's pid and start nanoseconds (pids repeat across pid namespaces that
/// share one Docker daemon) and `n` a process-wide counter.
fn unique_name(name: &str) -> String {
    static RUN: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = RUN.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("{:x}{:04x}", std::process::id(), nanos & 0xffff)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("mlt-{run}-{n}-{clean}")
}

/// Whether a labelled resource is a leftover: its owner process (in our pid namespace)
/// is gone or is another process with the same pid, or it is older than [`STALE_AFTER`].
/// Resources of live runs, even of other engineers sharing the daemon, are kept.
fn is_stale(owner_label: &str, created_label: &str) -> bool {
    if let Ok(created) = created_label.parse::<u64>() {
        if unix_now_secs().saturating_sub(created) > STALE_AFTER.as_secs() {
            return true;
        }
    }
    let f: Vec<&str> = owner_label.split(':').collect();
    match (f.as_slice(), pid_namespace()) {
        ([ns, pid, start], ours) if *ns == ours && !ours.is_empty() => {
            let pid: u32 = pid.parse().unwrap_or(0);
            pid != 0 && proc_start_time(pid).as_deref() != Some(*start)
        }
        _ => false,
    }
}

/// Remove containers, then networks, labelled `meshlog-test=1` that [`is_stale`] calls
/// leftovers (tests may be killed mid-way; leaked networks exhaust Docker's address
/// pools). Best effort: failures are printed, not fatal.
pub fn cleanup_stale() {
    let fmt = format!("{{{{.Names}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}\t{{{{.Label \"{CREATED_LABEL}\"}}}}");
    let filter = format!("label={LABEL}");
    let lists: [(&[&str], &[&str]); 2] = [
        (&["ps", "-a", "--filter", &filter, "--format", &fmt], &["rm", "-f", "-v"]),
        (
            &["network", "ls", "--filter", &filter, "--format", &fmt.replace(".Names", ".Name")],
            &["network", "rm"],
        ),
    ];
    for (list, remove) in lists {
        let listed = match docker_ok(list) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("docker cleanup: {e}");
                continue;
            }
        };
        for line in listed.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [name, owner, created] = f.as_slice() {
                if is_stale(owner, created) {
                    let args: Vec<&str> = remove.iter().copied().chain([*name]).collect();
                    match docker_ok(&args) {
                        Ok(_) => eprintln!("docker cleanup: removed leftover {name}"),
                        Err(e) => eprintln!("docker cleanup: {e}"),
                    }
                }
            }
        }
    }
}

/// A user-defined bridge network, uniquely named, removed on drop (after any container
/// still attached to it). Docker picks the subnet, so parallel tests never collide.
pub struct DockerNet {
    name: String,
    /// `-v host:container:ro` arguments given to every node and client on this network.
    mounts: Vec<String>,
}

impl DockerNet {
    /// Create a network named `mlt-<run>-<n>-<prefix>`. Panics naming the docker error
    /// (e.g. exhausted address pools).
    pub fn create(prefix: &str) -> DockerNet {
        image(); // runs the stale cleanup first, which frees address pools
        let name = unique_name(prefix);
        let mut args = vec!["network".to_string(), "create".into(), "--driver".into(), "bridge".into()];
        args.extend(label_args());
        args.push(name.clone());
        docker_ok(&as_strs(&args)).unwrap_or_else(|e| panic!("creating network {name}: {e}"));
        DockerNet { name, mounts: Vec::new() }
    }

    /// Mount host directory `host` read-only at `at` in every node and client started on
    /// this network from now on (e.g. a mesh key).
    pub fn mount(&mut self, host: &std::path::Path, at: &str) {
        self.mounts.push(format!("{}:{at}:ro", host.display()));
    }

    fn mount_args(&self) -> Vec<String> {
        self.mounts.iter().flat_map(|m| ["-v".to_string(), m.clone()]).collect()
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `meshlog ARGS --server SERVER` in a fresh client container on this network
    /// (another host than any node), like [`crate::run_cli`]. Panics only if docker
    /// itself fails or the command outlives [`CLIENT_BUDGET`].
    pub fn run_cli(&self, server: &str, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        let name = unique_name("client");
        let mut run = vec!["run".to_string(), "--rm".into(), "--name".into(), name.clone()];
        run.extend(["--network".to_string(), self.name.clone(), "-e".into(), "NO_COLOR=1".into()]);
        if stdin.is_some() {
            run.push("-i".into()); // without -i the container never sees stdin (nor its EOF)
        }
        run.extend(self.mount_args());
        run.extend(label_args());
        run.push(image());
        run.extend(args.iter().map(|a| a.to_string()));
        run.extend(["--server".to_string(), server.to_string()]);
        let out = docker(&as_strs(&run), stdin, CLIENT_BUDGET);
        out.unwrap_or_else(|e| {
            let _ = docker_ok(&["rm", "-f", &name]); // the CLI is dead, the container may not be
            panic!("client container: {e}")
        })
    }
}

impl Drop for DockerNet {
    fn drop(&mut self) {
        // Containers still attached (a node dropped later, a leaked client) block removal.
        let filter = format!("network={}", self.name);
        if let Ok(ids) = docker_ok(&["ps", "-aq", "--filter", &filter]) {
            for id in ids.split_whitespace() {
                let _ = docker_ok(&["rm", "-f", "-v", id]);
            }
        }
        if let Err(e) = docker_ok(&["network", "rm", &self.name]) {
            eprintln!("dropping network: {e}");
        }
    }
}

/// `&[String]` as `Vec<&str>` for [`docker`].
fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A `meshlog node` in its own container on a [`DockerNet`], data in `/data` on the
/// container's file system (kept across [`kill`](Self::kill) + [`restart`](Self::restart)).
/// Dropping it removes the container; if the thread is panicking, its logs are printed
/// first.
pub struct DockerNode {
    name: String,
    net: String,
    ip: String,
    /// Stdout lines of earlier runs of this container, which `wait_listening` skips.
    stdout_skip: usize,
    /// The listen address after the IP (`/tcp/9494/p2p/<peer id>`), once known.
    addr_rest: Option<String>,
}

impl DockerNode {
    /// Start `meshlog node --data-dir /data --listen /ip4/0.0.0.0/tcp/9494 --log info
    /// EXTRA_NODE_ARGS...` detached in a new container named `mlt-<run>-<n>-<name>` (also
    /// its hostname). Does not wait: call [`wait_listening`](Self::wait_listening).
    pub fn run(net: &DockerNet, name: &str, extra_node_args: &[&str]) -> DockerNode {
        let cname = unique_name(name);
        let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), cname.clone()];
        args.extend(["--hostname".to_string(), cname.clone(), "--network".into(), net.name.clone()]);
        // Plain logs: tracing colours by default even when stdout is not a terminal.
        args.extend(["-e".to_string(), "NO_COLOR=1".into()]);
        args.extend(net.mount_args());
        args.extend(label_args());
        args.push(image());
        let listen = format!("/ip4/0.0.0.0/tcp/{NODE_PORT}");
        let node = ["node", "--data-dir", "/data", "--listen", &listen, "--log", "info"];
        args.extend(node.iter().chain(extra_node_args).map(|a| a.to_string()));
        docker_ok(&as_strs(&args)).unwrap_or_else(|e| panic!("starting node {cname}: {e}"));
        let mut node = DockerNode {
            name: cname,
            net: net.name.clone(),
            ip: String::new(),
            stdout_skip: 0,
            addr_rest: None,
        };
        node.refresh_ip();
        node
    }

    /// The container's name (also its hostname).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The container's IPv4 address on its network, as of its last start or connect.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Read the container's current address on its network.
    fn refresh_ip(&mut self) {
        let fmt = format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", self.net);
        let ip = docker_ok(&["inspect", "-f", &fmt, &self.name])
            .unwrap_or_else(|e| panic!("reading the address of {}: {e}", self.name));
        assert!(!ip.is_empty(), "{} has no address on {}", self.name, self.net);
        self.ip = ip;
    }

    /// Poll `docker logs` every 100 ms until this run of the node prints `listening on`,
    /// and return an address other containers can dial (also kept for
    /// [`addr`](Self::addr)): `/ip4/<container ip>/tcp/9494/p2p/<peer id>`. A reported
    /// address on the container's IP is returned as is; if the node reports only the
    /// loopback expansion of `0.0.0.0` (it does today), the same address with the
    /// container's IP. Panics with the logs if the container stops or `budget` passes.
    pub fn wait_listening(&mut self, budget: Duration) -> String {
        let started = Instant::now();
        loop {
            let stdout = self.logs_streams().0;
            let addrs: Vec<&str> = stdout
                .lines()
                .skip(self.stdout_skip)
                .filter_map(|l| l.trim().strip_prefix("listening on "))
                .collect();
            let ours = format!("/ip4/{}/", self.ip);
            let found = (addrs.iter().find_map(|a| a.strip_prefix(&ours)))
                .or_else(|| addrs.iter().find_map(|a| a.strip_prefix("/ip4/127.0.0.1/")));
            if let Some(rest) = found {
                self.addr_rest = Some(format!("/{rest}"));
                return self.addr();
            }
            assert!(self.is_running(), "node {} stopped before listening; logs:\n{}", self.name, self.logs());
            assert!(
                started.elapsed() < budget,
                "timed out after {budget:?} waiting for node {} to listen; logs:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The node's address at its current IP (which [`connect`](Self::connect) and
    /// [`restart`](Self::restart) may change): `/ip4/<ip>/tcp/9494/p2p/<peer id>`.
    /// Panics before the first [`wait_listening`](Self::wait_listening).
    pub fn addr(&self) -> String {
        let rest = self.addr_rest.as_deref();
        let rest = rest.unwrap_or_else(|| panic!("{}: addr() before wait_listening()", self.name));
        format!("/ip4/{}{rest}", self.ip)
    }

    /// Whether the container's process runs (paused counts as running).
    pub fn is_running(&self) -> bool {
        self.state("{{.State.Running}}") == "true"
    }

    /// Whether the container is paused.
    pub fn is_paused(&self) -> bool {
        self.state("{{.State.Paused}}") == "true"
    }

    /// A `docker inspect` field of the container, empty if it cannot be read.
    fn state(&self, template: &str) -> String {
        docker_ok(&["inspect", "-f", template, &self.name]).unwrap_or_default()
    }

    /// `docker exec [-i] <name> /meshlog ARGS`: a client command on the node's own host.
    pub fn exec(&self, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        let mut cmd = vec!["exec"];
        if stdin.is_some() {
            cmd.push("-i");
        }
        cmd.extend([self.name.as_str(), "/meshlog"]);
        cmd.extend(args);
        docker(&cmd, stdin, CLIENT_BUDGET).unwrap_or_else(|e| panic!("exec in {}: {e}", self.name))
    }

    /// Cut the node off its network (`docker network disconnect`); it keeps running.
    /// Its IP is freed: a container started meanwhile may get it.
    pub fn disconnect(&self) {
        self.control(&["network", "disconnect", &self.net, &self.name]);
    }

    /// Reattach the node to its network; its address may change (see [`ip`](Self::ip)).
    pub fn connect(&mut self) {
        self.control(&["network", "connect", &self.net, &self.name]);
        self.refresh_ip();
    }

    /// Freeze every process of the container (cgroup freezer, like SIGSTOP).
    pub fn pause(&self) {
        self.control(&["pause", &self.name]);
    }

    /// Thaw a paused container.
    pub fn unpause(&self) {
        self.control(&["unpause", &self.name]);
    }

    /// `docker kill -s KILL` (also works while paused), then wait until the container has
    /// stopped (and its logs are complete): no shutdown, no flush.
    pub fn kill(&self) {
        self.control(&["kill", "-s", "KILL", &self.name]);
        self.control(&["wait", &self.name]);
    }

    /// Start the same container again (stopping it first if it runs), data kept. Its
    /// address may change. Call [`wait_listening`](Self::wait_listening) next; it reads
    /// only this run's output.
    pub fn restart(&mut self) {
        if self.is_paused() {
            self.unpause(); // a frozen process cannot take the SIGTERM of `docker stop`
        }
        if self.is_running() {
            self.control(&["stop", "-t", "10", &self.name]);
        }
        // Stopped, so its stdout is complete: the count is exact.
        self.stdout_skip = self.logs_streams().0.lines().count();
        self.control(&["start", &self.name]);
        self.refresh_ip();
    }

    /// Everything the container printed, all runs: stdout, then stderr (the node's
    /// tracing logs).
    pub fn logs(&self) -> String {
        let (out, err) = self.logs_streams();
        format!("--- stdout ---\n{out}--- stderr ---\n{err}")
    }

    /// The container's stdout and stderr, separately (`docker logs` keeps them apart).
    fn logs_streams(&self) -> (String, String) {
        match docker(&["logs", &self.name], None, DOCKER_CLI_BUDGET) {
            Ok(o) if o.code == 0 => (o.stdout, o.stderr),
            Ok(o) => panic!("`docker logs {}` exited {}: {}", self.name, o.code, o.stderr),
            Err(e) => panic!("{e}"),
        }
    }

    /// Run a docker command on this container that must succeed.
    fn control(&self, args: &[&str]) {
        if let Err(e) = docker_ok(args) {
            panic!("node {}: {e}", self.name);
        }
    }
}

impl Drop for DockerNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(o) = docker(&["logs", "--tail", "200", &self.name], None, DOCKER_CLI_BUDGET) {
                eprintln!("=== logs of {} ===\n{}{}", self.name, o.stdout, o.stderr);
            }
        }
        if let Err(e) = docker_ok(&["rm", "-f", "-v", &self.name]) {
            eprintln!("dropping node: {e}");
        }
    }
}

/// Poll `check` every 200 ms (each poll is typically a client container) until it holds,
/// or panic naming `what` after `budget`.
pub fn wait_for(what: &str, budget: Duration, mut check: impl FnMut() -> bool) {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < budget, "timed out after {budget:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
