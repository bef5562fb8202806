//! The `parley` binary as an operator uses it: init, account create, serve.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn parley(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parley")).args(args).output().expect("parley runs")
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn init_account_create_and_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");

    let first = parley(&["init", "--data-dir", data, "--durability", "normal"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let out = String::from_utf8_lossy(&first.stdout).to_string();
    let admin_token = out.lines().find(|l| l.starts_with("padm_")).expect("the admin token is printed").to_string();
    let second = parley(&["init", "--data-dir", data]);
    assert!(second.status.success());
    assert!(!String::from_utf8_lossy(&second.stdout).contains("padm_"), "the token is shown only once");

    let created = parley(&["account", "create", "Acme", "--data-dir", data]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let account: serde_json::Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let key = account["api_key"]["secret"].as_str().expect("secret").to_string();
    assert!(account["account_id"].is_string());

    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env("PARLEY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let serving = Serving(child);
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        assert!(Instant::now() < deadline, "serve printed no URL");
        let line = lines.next().expect("a line").expect("readable");
        if let Some(url) = line.strip_prefix("Parley listening on ") {
            break url.to_string();
        }
    };

    let http = reqwest::Client::new();
    let agents = http.get(format!("{url}/v1/agents")).bearer_auth(&key).send().await.expect("request");
    assert_eq!(agents.status(), 200, "the key printed by `account create` works");
    let another = http
        .post(format!("{url}/v1/accounts"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"name": "Second"}))
        .send()
        .await
        .expect("request");
    assert_eq!(another.status(), 201, "the token printed by `init` works");
    let ready = http.get(format!("{url}/readyz")).send().await.expect("request");
    assert_eq!(ready.status(), 200);

    // SIGTERM stops it cleanly.
    let pid = serving.0.id().to_string();
    let mut serving = serving;
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = serving.0.wait().expect("exits");
    assert!(status.success(), "graceful exit: {status:?}");
}

/// `parley bench ingest --pairs N` loads Parley and the baseline's handler in turns and writes
/// every pair's figures and their ratio; what the figures are is for BENCHMARKS.md, not a test.
#[test]
fn bench_ingest_alternates_between_parley_and_its_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("figures.json");
    let args = ["bench", "ingest", "--durability", "normal", "--pairs", "2", "--seconds", "1"];
    let small = ["--clients", "4", "--conversations", "20", "--out", out.to_str().expect("utf-8 path")];
    let run = parley(&[&args[..], &small[..]].concat());
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let figures: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the figures are written")).expect("JSON");
    let pairs = figures["runs"].as_array().expect("one entry per pair");
    assert_eq!(pairs.len(), 2);
    for pair in pairs {
        for side in ["ingest", "baseline"] {
            assert!(pair[side]["messages_acknowledged"].as_u64() > Some(0), "{side} acknowledged nothing: {pair}");
            assert_eq!(pair[side]["errors"], 0, "{side}: {pair}");
        }
        let ratio = pair["ratio"].as_f64().expect("a ratio");
        let rate = |side: &str| pair[side]["messages_per_second"].as_f64().unwrap_or(0.0);
        assert!((ratio - rate("ingest") / rate("baseline")).abs() < 0.001, "{pair}");
    }
    assert!(figures["ingest_over_baseline"]["median"].is_number());
    assert!(figures["cpu_seconds"]["server_threads"]["parley-sqlite-w"].is_number(), "{figures}");
}

/// `--log-dir` makes `ingest` run on data that is kept (a seeded log, to measure ingest into a
/// large one): a second run opens what the first left and adds to it.
#[test]
fn bench_ingest_runs_on_a_kept_data_directory_and_adds_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, out) = (dir.path().join("log"), dir.path().join("figures.json"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let args = ["bench", "ingest", "--durability", "normal", "--pairs", "0", "--seconds", "1", "--clients", "4"];
        let kept = [
            "--conversations",
            "20",
            "--log-dir",
            data.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ];
        let run = parley(&[&args[..], &kept[..]].concat());
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let db = rusqlite::Connection::open(data.join("data").join("parley.db")).expect("the data is kept");
        let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).expect("count");
        seen.push((
            count("SELECT COUNT(*) FROM accounts"),
            count("SELECT COUNT(*) FROM events WHERE type = 'message_received'"),
        ));
    }
    assert_eq!((seen[0].0, seen[1].0), (1, 2), "each run makes its account beside the last's");
    assert!(seen[0].1 > 0 && seen[1].1 > seen[0].1, "the second run's messages join the first's: {seen:?}");
}

/// A bench parameter that would measure nothing (or divide by zero) is refused with the flag's
/// name, before any server starts.
#[test]
fn bench_refuses_counts_of_zero_and_unknown_durabilities() {
    for bad in [["--conversations", "0"], ["--clients", "0"], ["--seconds", "0"], ["--durability", "sometimes"]] {
        let run = parley(&["bench", "ingest", bad[0], bad[1]]);
        assert_eq!(run.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(bad[0]) && stderr.contains(bad[1]), "{bad:?}: {stderr}");
    }
}
