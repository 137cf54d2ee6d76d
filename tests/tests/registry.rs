//! Images from a registry (issue 10): a real registry (Debian's docker-registry) on the lab
//! underlay, with basic auth and without. A node that never had an image pulls it; the
//! credentials `--with-registry-auth` sends reach only the node that runs the task; a
//! refused pull is the task's error.

use std::path::PathBuf;
use std::time::Duration;

use shoal_tests::lab::Lab;
use shoal_tests::{require_lab, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// A docker client config holding `user:password` for the lab registry; its directory.
fn docker_config(name: &str, registry: &str, user: &str, password: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-docker-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let auth = base64(&format!("{user}:{password}"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("config");
    dir
}

fn base64(text: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let data = text.as_bytes();
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `service create --with-registry-auth --name NAME` pinned to host `host`, failing tasks
/// retried fast; the CLI's outcome.
fn create_on(lab: &Lab, host: usize, name: &str, image: &str) -> shoal_tests::Run {
    let constraint = format!("node.hostname==n{host}");
    lab.shoal(
        1,
        &[
            "service",
            "create",
            "--with-registry-auth",
            "--name",
            name,
            "--constraint",
            &constraint,
            "--restart-delay",
            "100ms",
            image,
            "sleep",
            "100000",
        ],
    )
}

fn has_image(lab: &Lab, host: usize, image: &str) -> bool {
    lab.docker(host, &["image", "inspect", image]).ok()
}

#[test]
fn a_task_pulls_its_image_from_the_lab_registry_with_the_credentials_sent_to_its_node() {
    require_lab!();
    let lab = Lab::up(1, 2).expect("the lab comes up");
    let registry = lab.script_ok(&["registry", "--auth", "shoal:s3cret-pw"]);
    let registry = registry.trim().to_string();
    let image = format!("{registry}/lab/app:1");

    // n1 pushes the test image (its engine logs in with its own client config).
    let pusher = docker_config("pusher", &registry, "shoal", "s3cret-pw");
    let docker1 = |args: &[&str]| {
        let mut all = vec!["--config", pusher.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        lab.docker(1, &all)
    };
    assert!(docker1(&["tag", "shoal-test/busybox:a", &image]).ok());
    let pushed = docker1(&["push", &image]);
    assert!(pushed.ok(), "push: {}{}", pushed.stdout, pushed.stderr);
    assert!(!has_image(&lab, 2, &image), "n2 never had it");

    // With the right credentials: n2 pulls and runs it.
    std::env::set_var("DOCKER_CONFIG", &pusher);
    let out = create_on(&lab, 2, "pulled", &image);
    assert!(out.ok(), "create: {}{}", out.stdout, out.stderr);
    assert!(has_image(&lab, 2, &image), "n2 pulled the image");
    assert!(
        !has_image(&lab, 3, &image),
        "n3 runs no task of it and pulled nothing"
    );
    // The credentials are on no node's disk (the agent keeps them in memory).
    let scan = lab.exec(
        1,
        &[
            "grep",
            "-rl",
            "--binary-files=text",
            "s3cret-pw",
            shoal_tests::lab::LAB_DATA,
        ],
    );
    let leaks: Vec<&str> = scan.stdout.lines().collect();
    assert!(leaks.is_empty(), "credentials on disk: {leaks:?}");

    // A wrong password: the pull is refused, and the task says so.
    let wrong = docker_config("wrong", &registry, "shoal", "not-it");
    std::env::set_var("DOCKER_CONFIG", &wrong);
    let out = create_on(&lab, 3, "denied", &image);
    assert!(!out.ok(), "a refused pull fails the create");
    let ps = lab.shoal_ok(1, &["service", "ps", "--no-trunc", "denied"]);
    assert!(
        ps.contains("unauthorized") || ps.contains("no basic auth credentials"),
        "the task error names the refusal: {ps}"
    );
    let missing = format!("{registry}/lab/nothing:1");
    std::env::set_var("DOCKER_CONFIG", &pusher);
    let out = create_on(&lab, 3, "absent", &missing);
    assert!(!out.ok());
    let ps = lab.shoal_ok(1, &["service", "ps", "--no-trunc", "absent"]);
    assert!(
        ps.contains("manifest unknown") || ps.contains("not found"),
        "the task error says the image is not there: {ps}"
    );

    // --resolve-image: a stack's image pinned to the digest the registry names now.
    let dir = std::env::temp_dir().join(format!("shoal-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("compose.yml");
    std::fs::write(
        &file,
        format!("services:\n  app:\n    image: {image}\n    command: sleep 100000\n"),
    )
    .expect("compose");
    let file = file.display().to_string();
    let pinned = |lab: &Lab| -> String {
        let inspect = lab.shoal_ok(1, &["service", "inspect", "pin_app"]);
        inspect
            .split('"')
            .find(|w| w.contains("@sha256:"))
            .unwrap_or_default()
            .to_string()
    };
    let deploy = |extra: &[&str]| {
        let mut args = vec!["stack", "deploy", "--with-registry-auth"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-c", &file, "pin"]);
        lab.shoal_ok(1, &args)
    };
    deploy(&[]);
    let first = pinned(&lab);
    assert!(
        first.starts_with(&format!("{image}@sha256:")),
        "pinned: {first:?}"
    );
    // The tag moves to another image: `changed` keeps the pin, `always` follows the tag.
    assert!(docker1(&["tag", "shoal-test/busybox:b", &image]).ok());
    assert!(docker1(&["push", &image]).ok());
    let out = deploy(&["--resolve-image", "changed"]);
    assert!(out.contains("Nothing to change"), "{out}");
    assert_eq!(pinned(&lab), first);
    let out = deploy(&["--resolve-image", "always"]);
    assert!(out.contains("Updating service pin_app"), "{out}");
    let second = pinned(&lab);
    assert!(
        second.contains("@sha256:") && second != first,
        "{first} then {second}"
    );

    // The same registry without auth: a node pulls with no credentials at all.
    lab.script_ok(&["registry"]);
    std::env::remove_var("DOCKER_CONFIG");
    let out = lab.shoal(
        1,
        &[
            "service",
            "create",
            "--name",
            "open",
            "--constraint",
            "node.hostname==n3",
            &image,
            "sleep",
            "100000",
        ],
    );
    assert!(out.ok(), "create: {}{}", out.stdout, out.stderr);
    wait_until("n3 runs the pulled image", WAIT, || {
        has_image(&lab, 3, &image).then_some(())
    })
    .expect("pulled without auth");
}
