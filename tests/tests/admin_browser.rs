//! The live status page in a real headless browser (Debian's `chromium`), against three
//! `meshlog node` processes: the page loads from one node with no external asset, draws
//! every member, keeps polling by itself, and shows a member that dies as down.
//!
//! Chromium must be installed (`apt-get install -y chromium`); without it this test
//! fails with that advice, unless `MESHLOG_SKIP_BROWSER=1` says to skip it.

use meshlog_tests::cluster::Cluster;
use meshlog_tests::{wait_until, SHORT_BUDGET};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one headless page load may take, start to DOM dump.
const BROWSER_BUDGET: Duration = Duration::from_secs(90);
/// Virtual time the page runs before its DOM is dumped (the page polls every 1.5 s).
const PAGE_TIME_MS: u32 = 5_000;

/// The browser to use: `MESHLOG_CHROMIUM`, else the first of Debian's names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MESHLOG_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Load `url` headless, let the page run [`PAGE_TIME_MS`] of virtual time, and return
/// the DOM it built.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={PAGE_TIME_MS}"))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if started.elapsed() > BROWSER_BUDGET {
            let _ = child.kill();
            panic!("chromium did not dump {url} within {BROWSER_BUDGET:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-state` of the member drawn for `peer`, if it is drawn.
fn drawn_state(dom: &str, peer: &str) -> Option<String> {
    let at = dom.find(&format!("data-peer=\"{peer}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..at + dom[at..].find('>')?];
    let state = tag.split("data-state=\"").nth(1)?;
    Some(state.split('"').next()?.to_string())
}

/// How many times the page has polled by itself.
fn polls(dom: &str) -> u32 {
    dom.split("data-polls=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_status_page_draws_the_mesh_and_shows_a_death() {
    let Some(browser) = chromium() else {
        if std::env::var("MESHLOG_SKIP_BROWSER").as_deref() == Ok("1") {
            println!("skipped: no chromium, and MESHLOG_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "no headless browser: install Debian's chromium (apt-get install -y chromium) or point \
             MESHLOG_CHROMIUM at one; MESHLOG_SKIP_BROWSER=1 skips this test on purpose"
        );
    };
    let mut mesh = Cluster::start(3).await;
    let client = mesh.client(0);
    client.create_topic("orders", 3, 3, Default::default()).await.unwrap();
    let page = format!("{}/", mesh.nodes[0].as_ref().unwrap().http.clone().expect("an admin port"));
    let peers = mesh.ids.clone();

    // Phase 1: every member is drawn up, and the page keeps polling by itself.
    let dom = tokio::task::spawn_blocking({
        let (browser, page) = (browser.clone(), page.clone());
        move || dump_dom(&browser, &page)
    })
    .await
    .unwrap();
    for p in &peers {
        assert_eq!(drawn_state(&dom, p).as_deref(), Some("up"), "member {p} drawn up; the page:\n{dom}");
    }
    assert!(dom.contains("data-partition=\"orders-2\""), "partitions drawn");
    assert!(polls(&dom) >= 2, "the page polled {} time(s) on its own", polls(&dom));

    // Phase 2: a member dies; the page shows it down.
    let dead = peers[2].clone();
    mesh.kill9(2);
    wait_until("a sees c down", SHORT_BUDGET, || async {
        let s = client.cluster_status().await.ok()?;
        s.members.iter().any(|m| m.peer == dead && m.state != "up").then_some(())
    })
    .await;
    let dom = tokio::task::spawn_blocking(move || dump_dom(&browser, &page)).await.unwrap();
    assert_eq!(drawn_state(&dom, &dead).as_deref(), Some("down"), "the dead member drawn down:\n{dom}");
    for p in &peers[..2] {
        assert_eq!(drawn_state(&dom, p).as_deref(), Some("up"), "member {p} still up");
    }
    println!("figure: status page drew 3 members, then the dead one as down");
}
