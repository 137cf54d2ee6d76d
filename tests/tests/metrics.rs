//! `--metrics-addr` scraped by a real Prometheus (Debian's) in the lab (issue 13): every
//! shoald is a target that is up; the manager's figures follow the cluster (tasks by
//! state, nodes, leadership, sessions) and its histograms count what happened
//! (scheduling delay, Raft transactions); a worker serves its node's own and no
//! manager's.

use std::time::Duration;

use serde_json::Value;
use shoal_tests::lab::Lab;
use shoal_tests::{require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const PROMETHEUS: &str = "127.0.0.1:9090";

/// A Prometheus API call (GET `path`) from inside n1, parsed.
fn api(lab: &Lab, path: &str) -> Option<Value> {
    let url = format!("http://{PROMETHEUS}{path}");
    let run = lab.exec(1, &["curl", "-sf", "--max-time", "5", &url]);
    if !run.ok() {
        return None;
    }
    let reply: Value = serde_json::from_str(&run.stdout).ok()?;
    (reply["status"] == "success").then(|| reply["data"].clone())
}

/// An instant query's samples: (labels, value).
fn query(lab: &Lab, promql: &str) -> Vec<(Value, f64)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Some(data) = api(lab, &format!("/api/v1/query?query={encoded}")) else {
        return Vec::new();
    };
    data["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let value = s["value"][1].as_str()?.parse().ok()?;
            Some((s["metric"].clone(), value))
        })
        .collect()
}

/// The single value of `promql` once it satisfies `ok`.
#[track_caller]
fn wait_value(lab: &Lab, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
    wait_until(promql, WAIT, || match query(lab, promql).as_slice() {
        [(_, v)] if ok(*v) => Some(*v),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}; last: {:?}", query(lab, promql)))
}

#[test]
fn prometheus_scrapes_every_node_and_the_managers_figures_follow_the_cluster() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let ips: Vec<String> = (1..=3).map(|h| lab.ip(h)).collect();

    // A worker answers with its node's metrics, and no manager's.
    let worker = lab.exec(
        1,
        &["curl", "-sf", &format!("http://{}:9323/metrics", ips[2])],
    );
    assert!(worker.ok(), "n3's metrics: {}", worker.stderr);
    assert!(
        worker.stdout.contains("swarm_node_manager 0"),
        "{}",
        worker.stdout
    );
    assert!(
        worker.stdout.contains("swarm_node_info{"),
        "{}",
        worker.stdout
    );
    assert!(
        !worker.stdout.contains("swarm_manager_leader"),
        "{}",
        worker.stdout
    );
    assert!(worker.stdout.ends_with("# EOF\n"), "{}", worker.stdout);

    let dir = tempfile::Builder::new()
        .prefix("shoal-prometheus-")
        .tempdir_in("/var/tmp")
        .expect("a temp dir");
    let targets: Vec<String> = ips.iter().map(|ip| format!("'{ip}:9323'")).collect();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: shoal\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .expect("writing prometheus.yml");
    let config_arg = format!("--config.file={}", config.display());
    let storage_arg = format!("--storage.tsdb.path={}", dir.path().join("data").display());
    let listen_arg = format!("--web.listen-address={PROMETHEUS}");
    let prometheus = lab.exec_streaming(1, &["prometheus", &config_arg, &storage_arg, &listen_arg]);

    // Every shoald is a target that is up.
    wait_until("three targets up", WAIT, || {
        let data = api(&lab, "/api/v1/targets")?;
        let up = data["activeTargets"]
            .as_array()?
            .iter()
            .filter(|t| t["health"] == "up")
            .count();
        (up == 3).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\nprometheus said: {:?}",
            api(&lab, "/api/v1/targets"),
            prometheus.stderr()
        )
    });

    wait_value(&lab, "swarm_manager_leader", |v| v == 1.0);
    wait_value(&lab, "sum(swarm_node_manager)", |v| v == 1.0);
    wait_value(&lab, "count(swarm_node_info)", |v| v == 3.0);
    wait_value(&lab, "count(count by (swarm_id) (swarm_node_info))", |v| {
        v == 1.0
    });
    wait_value(&lab, "swarm_manager_nodes{state=\"ready\"}", |v| v == 3.0);
    wait_value(&lab, "shoal_dispatcher_sessions", |v| v == 3.0);
    wait_value(&lab, "shoal_raft_term", |v| v >= 1.0);

    // The figures follow the cluster.
    lab.create_sleeping(1, "web", 3, &[]);
    wait_value(&lab, "swarm_manager_services_total", |v| v == 1.0);
    wait_value(&lab, "swarm_manager_tasks_total{state=\"running\"}", |v| {
        v == 3.0
    });
    let scale = lab.shoal(1, &["service", "scale", "web=5", "--detach"]);
    assert!(scale.ok(), "{}", scale.stderr);
    wait_value(&lab, "swarm_manager_tasks_total{state=\"running\"}", |v| {
        v == 5.0
    });
    // The histograms counted what happened: five tasks scheduled, writes through Raft.
    wait_value(
        &lab,
        "swarm_dispatcher_scheduling_delay_seconds_count{instance=~\".*\\\\.11:9323\"}",
        |v| v >= 5.0,
    );
    wait_value(
        &lab,
        "swarm_raft_transaction_latency_seconds_count{instance=~\".*\\\\.11:9323\"}",
        |v| v > 0.0,
    );
    wait_value(
        &lab,
        "swarm_store_write_tx_latency_seconds_count{instance=~\".*\\\\.11:9323\"}",
        |v| v > 0.0,
    );
    wait_value(&lab, "shoal_raft_applied_index", |v| v >= 1.0);
    drop(prometheus);
}
