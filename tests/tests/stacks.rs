//! Stacks on lab hosts (issue 10): a compose file deployed with `stack deploy`, waited on,
//! reached by service name, revised, rolled back and removed without a trace.

use std::path::PathBuf;
use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// A stack file in a directory of its own; returns its path.
fn stack_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-stack-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("compose.yml");
    std::fs::write(&path, text).expect("compose file");
    path
}

fn app(image: &str) -> String {
    format!(
        r#"# A small app shaped as the corpus's: a web tier with a healthcheck, a client that
# reads it by name over the stack's network, and a one-shot job.
version: "3.8"
x-image: &image {image}
services:
  web:
    image: *image
    command: ["sh", "-c", "echo stack-page-$$(cat /etc/shoal-test-version 2>/dev/null || echo a) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"]
    ports:
      - "8088:80"
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1/"]
      interval: 1s
      retries: 3
    deploy:
      replicas: 2
      labels:
        tier: front
  client:
    image: *image
    command: sleep 100000
    environment:
      TARGET: http://web/
  once:
    image: *image
    command: echo done
    deploy:
      mode: replicated-job
      restart_policy:
        condition: none
"#
    )
}

/// The host and id of a running container of `service`, on whichever lab host runs one.
fn container(lab: &Lab, service: &str) -> Option<(usize, String)> {
    lab.hosts().iter().find_map(|&h| {
        let filter = format!("label=shoal.service.name={service}");
        let ps = lab.docker(h, &["ps", "-q", "--filter", &filter]).stdout;
        ps.lines().next().map(|id| (h, id.to_string()))
    })
}

/// What `cmd` prints in a running container of `service`, if it succeeds.
fn in_container(lab: &Lab, service: &str, cmd: &[&str]) -> Option<String> {
    let (h, id) = container(lab, service)?;
    let mut args = vec!["exec", id.as_str()];
    args.extend_from_slice(cmd);
    let out = lab.docker(h, &args);
    out.ok().then_some(out.stdout)
}

/// web's page as the stack's client container (wherever it runs now) reads it by name.
fn page_from_client(lab: &Lab) -> Option<String> {
    let cmd = ["timeout", "5", "wget", "-qO-", "http://web/"];
    in_container(lab, "app_client", &cmd).map(|page| page.trim().to_string())
}

fn containers_of_stack(lab: &Lab, host: usize, stack: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    lab.docker(host, &["ps", "-aq", "--filter", &filter])
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_stack_converges_answers_by_name_rolls_back_and_leaves_nothing_when_removed() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let file = stack_file("app", &app("shoal-test/busybox:a"));
    let file_arg = file.display().to_string();

    // Deploy waits until every service has converged, the job included.
    let out = lab.shoal(1, &["stack", "deploy", "-c", &file_arg, "app"]);
    assert!(out.ok(), "deploy: {}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Creating service app_web"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("every service has converged"),
        "{}",
        out.stdout
    );

    // The client reaches web by its name in the file, over the stack's default network.
    let page = wait_until("web by name from the client", WAIT, || {
        page_from_client(&lab)
    })
    .expect("web answers by name");
    assert_eq!(page, "stack-page-a");

    // The published port answers on every node through the routing mesh.
    for host in 1..=3 {
        let url = format!("http://10.78.0.{}:8088/", 10 + host);
        let page = wait_until("the mesh port", WAIT, || {
            let out = lab.exec(3, &["timeout", "5", "wget", "-qO-", &url]);
            out.ok().then(|| out.stdout.trim().to_string())
        })
        .expect("the port answers");
        assert_eq!(page, "stack-page-a");
    }

    let ls = lab.shoal_ok(1, &["stack", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("app ") && l.contains(" 3 ")),
        "{ls}"
    );
    let services = lab.shoal_ok(1, &["stack", "services", "app"]);
    assert_eq!(
        services.lines().count(),
        4,
        "header and three services: {services}"
    );
    let ps = lab.shoal_ok(1, &["stack", "ps", "app"]);
    assert!(
        ps.contains("app_web.1") && ps.contains("app_once.1"),
        "{ps}"
    );

    // Deploying the same file again changes nothing.
    let out = lab.shoal_ok(1, &["stack", "deploy", "-c", &file_arg, "app"]);
    assert!(out.contains("Nothing to change"), "{out}");

    // A new image: revision 2; the page changes once web has rolled.
    std::fs::write(&file, app("shoal-test/busybox:b")).expect("new image");
    let out = lab.shoal_ok(1, &["stack", "deploy", "-c", &file_arg, "app"]);
    assert!(out.contains("Updating service app_web"), "{out}");
    assert!(out.contains("revision 2"), "{out}");
    // Every service changed image (one anchor): the client is a new container too.
    let page = wait_until("the client's new container", WAIT, || {
        page_from_client(&lab)
    });
    assert_eq!(page.expect("a page").as_str(), "stack-page-b");

    // Rollback: the first image runs again, as revision 3.
    let out = lab.shoal_ok(1, &["stack", "rollback", "app"]);
    assert!(out.contains("revision 3"), "{out}");
    let page = wait_until("the client's new container", WAIT, || {
        page_from_client(&lab)
    });
    assert_eq!(page.expect("a page").as_str(), "stack-page-a");
    let history = lab.shoal_ok(1, &["stack", "history", "app"]);
    let rows: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{history}");
    assert!(rows[2].contains("rollback to 1"), "{history}");

    // stack rm: nothing of the stack is left, on any host.
    let out = lab.shoal(1, &["stack", "rm", "app"]);
    assert!(out.ok(), "rm: {}\n{}", out.stdout, out.stderr);
    assert!(lab.shoal_ok(1, &["service", "ls", "-q"]).trim().is_empty());
    let networks = lab.shoal_ok(1, &["network", "ls"]);
    assert!(!networks.contains("app_default"), "{networks}");
    assert!(!lab.shoal_ok(1, &["stack", "ls"]).contains("app"));
    let tasks = lab.shoal(1, &["stack", "ps", "app"]);
    assert!(
        !tasks.ok() && tasks.stderr.contains("not found"),
        "{}",
        tasks.stderr
    );
    for host in 1..=3 {
        wait_until("the stack's containers gone", WAIT, || {
            containers_of_stack(&lab, host, "app")
                .is_empty()
                .then_some(())
        })
        .expect("no container left");
    }
}

#[test]
fn deploy_fails_with_the_task_error_when_a_service_cannot_start_and_returns_for_jobs() {
    require_lab!();
    let lab = Lab::up(1, 1).expect("the lab comes up");
    let file = stack_file(
        "broken",
        "services:\n  ok:\n    image: shoal-test/busybox:a\n    command: sleep 100000\n  \
         missing:\n    image: shoal-test/busybox:nope\n    deploy:\n      restart_policy:\n        \
         delay: 100ms\n",
    );
    let out = lab.shoal(
        1,
        &[
            "stack",
            "deploy",
            "-c",
            &file.display().to_string(),
            "broken",
        ],
    );
    assert!(
        !out.ok(),
        "a missing image must fail the deploy: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("service broken_missing failed")
            && out.stderr.contains("every attempt fails alike"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("nope"),
        "the task error names the image: {}",
        out.stderr
    );

    // A stack of one job: deploy returns once it has completed.
    let file = stack_file(
        "job",
        "services:\n  once:\n    image: shoal-test/busybox:a\n    command: [\"true\"]\n    \
         deploy:\n      mode: replicated-job\n      replicas: 2\n",
    );
    let out = lab.shoal(
        1,
        &["stack", "deploy", "-c", &file.display().to_string(), "job"],
    );
    assert!(out.ok(), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("once: converged (2/2 completed)"),
        "{}",
        out.stdout
    );
}

/// Every file under the lab's data directories (each host's shoald data and Docker data
/// root) that holds `needle`.
fn on_disk(lab: &Lab, needle: &str) -> Vec<String> {
    let out = lab.exec(
        1,
        &[
            "grep",
            "-rl",
            "--binary-files=text",
            needle,
            shoal_tests::lab::LAB_DATA,
        ],
    );
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
fn a_secret_is_read_in_the_task_never_lands_on_disk_and_new_content_rolls_the_service() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let first = "first-secret-9c41d7";
    let file = stack_file(
        "secret",
        "services:\n  app:\n    image: shoal-test/busybox:a\n    command: sleep 100000\n    \
         secrets:\n      - source: token\n        mode: 0400\n    configs:\n      - source: conf\n        \
         target: /etc/app.conf\nsecrets:\n  token:\n    file: ./token.txt\nconfigs:\n  conf:\n    \
         content: answer=42\n",
    );
    let dir = file.parent().expect("dir").to_path_buf();
    std::fs::write(dir.join("token.txt"), first).expect("secret file");
    let file_arg = file.display().to_string();
    let out = lab.shoal(1, &["stack", "deploy", "-c", &file_arg, "s"]);
    assert!(out.ok(), "deploy: {}\n{}", out.stdout, out.stderr);

    let read = |path: &str| in_container(&lab, "s_app", &["cat", path]);
    assert_eq!(read("/run/secrets/token").as_deref(), Some(first));
    assert_eq!(read("/etc/app.conf").as_deref(), Some("answer=42"));
    let mode = in_container(&lab, "s_app", &["stat", "-c", "%a", "/run/secrets/token"]);
    assert_eq!(mode.as_deref().map(str::trim), Some("400"));
    // Not in any manager's Raft log or snapshot, not in any node's data or Docker's (the
    // scan does find what is there in clear: the service's name in Docker's container
    // labels; the Raft log and task databases are sealed at rest, config and all).
    assert!(
        !on_disk(&lab, "s_app").is_empty(),
        "the scan reads Docker's data"
    );
    assert_eq!(on_disk(&lab, first), Vec::<String>::new());
    let inspect = lab.shoal_ok(1, &["secret", "inspect", "s_token"]);
    assert!(
        !inspect.contains(first) && inspect.contains("s_app"),
        "{inspect}"
    );
    let refused = lab.shoal(1, &["secret", "rm", "s_token"]);
    assert!(
        !refused.ok() && refused.stderr.contains("in use by service s_app"),
        "{}",
        refused.stderr
    );

    // New content: a new version, and the service rolls onto it.
    let second = "second-secret-51be02";
    std::fs::write(dir.join("token.txt"), second).expect("new secret");
    let out = lab.shoal_ok(1, &["stack", "deploy", "-c", &file_arg, "s"]);
    assert!(
        out.contains("Updating secret s_token") && out.contains("Updating service s_app"),
        "{out}"
    );
    let now = wait_until("the new content in the task", WAIT, || {
        read("/run/secrets/token").filter(|s| s == second)
    });
    assert!(now.is_ok(), "the task reads the new content");
    assert_eq!(on_disk(&lab, second), Vec::<String>::new());

    // Outside stacks: `secret create` from a file, `service create --secret`.
    let solo = dir.join("solo.txt");
    std::fs::write(&solo, "solo-secret-3d91").expect("file");
    lab.shoal_ok(
        1,
        &["secret", "create", "solo", &solo.display().to_string()],
    );
    let out = lab.shoal(
        1,
        &[
            "service",
            "create",
            "--name",
            "solo",
            "--secret",
            "source=solo,target=s.txt",
            "shoal-test/busybox:a",
            "sleep",
            "100000",
        ],
    );
    assert!(out.ok(), "{}", out.stderr);
    let read_solo = in_container(&lab, "solo", &["cat", "/run/secrets/s.txt"]);
    assert_eq!(read_solo.as_deref(), Some("solo-secret-3d91"));
    lab.shoal_ok(1, &["service", "rm", "solo"]);
    lab.shoal_ok(1, &["secret", "rm", "solo"]);

    let out = lab.shoal(1, &["stack", "rm", "s"]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(lab.shoal_ok(1, &["secret", "ls", "-q"]).trim().is_empty());
    assert!(lab.shoal_ok(1, &["config", "ls", "-q"]).trim().is_empty());
}

#[test]
fn a_service_that_depends_on_a_healthy_one_starts_only_once_it_is_healthy() {
    require_lab!();
    let lab = Lab::up(1, 1).expect("the lab comes up");
    let file = stack_file(
        "depends",
        "services:\n  web:\n    image: shoal-test/busybox:a\n    command: sleep 100000\n    \
         depends_on:\n      db:\n        condition: service_healthy\n  db:\n    \
         image: shoal-test/busybox:a\n    command: sleep 100000\n    healthcheck:\n      \
         test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"]\n      interval: 500ms\n",
    );
    let out = lab.shoal(
        1,
        &[
            "stack",
            "deploy",
            "--detach",
            "-c",
            &file.display().to_string(),
            "d",
        ],
    );
    assert!(out.ok(), "{}", out.stderr);
    let container = |service: &str| container(&lab, service);
    // db runs but is not healthy: web waits, and says why.
    let db = wait_until("db's container", WAIT, || container("d_db")).expect("db runs");
    let waiting = wait_until("web waiting for db", WAIT, || {
        let ps = lab.shoal_ok(1, &["service", "ps", "d_web", "--no-trunc"]);
        ps.contains("waiting for service d_db to be healthy")
            .then_some(ps)
    });
    assert!(waiting.is_ok(), "web's task says what it waits for");
    let db_ps = lab.shoal_ok(1, &["service", "ps", "d_db"]);
    assert!(db_ps.contains("Starting"), "db is not healthy yet: {db_ps}");
    assert_eq!(
        container("d_web"),
        None,
        "web must not start before db is healthy"
    );

    // db becomes healthy: web starts.
    let touched = lab.docker(db.0, &["exec", &db.1, "touch", "/tmp/ready"]);
    assert!(touched.ok(), "{}", touched.stderr);
    wait_until("web's container", WAIT, || container("d_web")).expect("web starts");
    let db_ps = lab.shoal_ok(1, &["service", "ps", "d_db"]);
    assert!(db_ps.contains("Running"), "{db_ps}");
}

#[test]
fn a_real_stack_file_with_its_images_swapped_by_a_second_file_converges_and_is_reachable() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let stack = data.join("voting-app-stack.yml").display().to_string();
    let local = data.join("voting-app-local.yml").display().to_string();
    let out = lab.shoal(1, &["stack", "deploy", "-c", &stack, "-c", &local, "vote"]);
    assert!(out.ok(), "deploy: {}\n{}", out.stdout, out.stderr);
    let services = lab.shoal_ok(1, &["stack", "services", "vote"]);
    assert_eq!(
        services.lines().count(),
        6,
        "header and five services: {services}"
    );
    // Both published ports answer on every node; the worker, on both networks, reaches
    // vote (frontend) and result (backend) by name.
    for (port, page) in [(8080, "vote"), (8081, "result")] {
        for host in 1..=3 {
            let url = format!("http://10.78.0.{}:{port}/", 10 + host);
            let got = wait_until("a published port", WAIT, || {
                let out = lab.exec(2, &["timeout", "5", "wget", "-qO-", &url]);
                out.ok().then(|| out.stdout.trim().to_string())
            })
            .expect("answers");
            assert_eq!(got, page);
        }
    }
    for (name, page) in [("vote", "vote"), ("result", "result")] {
        let url = format!("http://{name}/");
        let got = wait_until("a name from the worker", WAIT, || {
            in_container(&lab, "vote_worker", &["timeout", "5", "wget", "-qO-", &url])
                .map(|p| p.trim().to_string())
        })
        .expect("reached by name");
        assert_eq!(got, page);
    }
    // The named volume is the stack's own, on the node running db.
    let (h, id) = container(&lab, "vote_db").expect("db runs");
    let mounts = lab.docker(
        h,
        &["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &id],
    );
    assert_eq!(mounts.stdout.trim(), "vote_db-data");
    let out = lab.shoal(1, &["stack", "rm", "vote"]);
    assert!(out.ok(), "{}", out.stderr);
    for host in 1..=3 {
        wait_until("the stack's containers gone", WAIT, || {
            containers_of_stack(&lab, host, "vote")
                .is_empty()
                .then_some(())
        })
        .expect("no container left");
    }
}
