use shoal_proto as pb;

use super::{from_docker, to_docker};
use crate::gokeys;
use crate::model;

fn full_spec() -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: "web".into(),
        labels: [("com.docker.stack.namespace".into(), "app".into())].into(),
        task: Some(pb::TaskSpec {
            container: Some(pb::ContainerSpec {
                image: "web:2".into(),
                command: vec!["httpd".into()],
                args: vec!["-f".into(), "-p".into(), "80".into()],
                env: vec!["A=1".into()],
                labels: [("x".into(), "y".into())].into(),
                stop_signal: "SIGTERM".into(),
                stop_grace_period_ms: Some(3_000),
                healthcheck: Some(pb::HealthConfig {
                    test: vec!["CMD-SHELL".into(), "true".into()],
                    interval_ms: 1_000,
                    timeout_ms: 500,
                    retries: 3,
                    start_period_ms: 0,
                }),
                user: "nobody".into(),
                working_dir: "/srv".into(),
                hostname: "{{.Task.Slot}}".into(),
                cap_add: vec!["NET_ADMIN".into()],
                sysctls: [("net.core.somaxconn".into(), "1024".into())].into(),
                ulimits: vec![pb::Ulimit {
                    name: "nofile".into(),
                    soft: 1024,
                    hard: 2048,
                }],
                init: true,
                read_only: true,
                mounts: vec![pb::Mount {
                    r#type: pb::MountType::Tmpfs as i32,
                    target: "/tmp".into(),
                    tmpfs_size_bytes: 1 << 20,
                    ..Default::default()
                }],
                secrets: vec![pb::FileReference {
                    id: "s1".into(),
                    name: "db_password".into(),
                    target: "db_password".into(),
                    uid: "10".into(),
                    gid: String::new(),
                    mode: 0o400,
                    version: 0,
                }],
                ..Default::default()
            }),
            limits: Some(pb::Resources {
                nano_cpus: 500_000_000,
                memory_bytes: 64 << 20,
            }),
            reservations: None,
            restart: Some(pb::RestartPolicy {
                condition: pb::RestartCondition::OnFailure as i32,
                delay_ms: Some(2_000),
                max_attempts: 3,
                window_ms: 60_000,
            }),
            placement: Some(pb::Placement {
                constraints: vec!["node.role==worker".into()],
                max_replicas: 2,
                spread: vec!["node.labels.zone".into()],
            }),
            networks: vec![pb::NetworkAttachmentConfig {
                target: "net1".into(),
                aliases: vec!["www".into()],
            }],
        }),
        mode: pb::ServiceMode::Replicated as i32,
        replicas: 3,
        update: Some(pb::UpdateConfig {
            parallelism: Some(2),
            delay_ms: 1_000,
            order: pb::UpdateOrder::StartFirst as i32,
            failure_action: pb::FailureAction::Rollback as i32,
            monitor_ms: Some(4_000),
            max_failure_ratio: 0.25,
        }),
        rollback: None,
        force_update: 2,
        max_concurrent: 0,
        endpoint: Some(pb::EndpointSpec {
            mode: pb::EndpointMode::Vip as i32,
            ports: vec![pb::PortConfig {
                protocol: pb::PortProtocol::Tcp as i32,
                target_port: 80,
                published_port: 8080,
                publish_mode: pb::PublishMode::Ingress as i32,
                host_ip: String::new(),
            }],
        }),
        depends_on: Vec::new(),
    }
}

#[test]
fn a_spec_read_and_sent_back_comes_back_unchanged() {
    let spec = full_spec();
    let docker = to_docker::service_spec(&spec);
    // Through JSON text and Go's key matching, as a client sends it back.
    let text = serde_json::to_string(&docker).expect("json");
    let value = gokeys::canonical(serde_json::from_str(&text).expect("parse"));
    let read: model::ServiceSpec = serde_json::from_value(value).expect("read");
    let back = from_docker::service_spec(read).expect("convert");
    assert_eq!(back, spec);
}

#[test]
fn json_is_written_as_docker_writes_it() {
    let docker = to_docker::service_spec(&full_spec());
    let json = serde_json::to_value(&docker).expect("json");
    let container = &json["TaskTemplate"]["ContainerSpec"];
    assert_eq!(container["StopGracePeriod"], 3_000_000_000i64);
    assert_eq!(container["Secrets"][0]["File"]["Mode"], 256);
    assert_eq!(container["Secrets"][0]["File"]["UID"], "10");
    assert_eq!(container["Secrets"][0]["File"]["GID"], "0");
    assert_eq!(
        json["TaskTemplate"]["RestartPolicy"]["Delay"],
        2_000_000_000i64
    );
    assert_eq!(json["UpdateConfig"]["Order"], "start-first");
    assert_eq!(json["UpdateConfig"]["Monitor"], 4_000_000_000i64);
    assert_eq!(json["Mode"]["Replicated"]["Replicas"], 3);
    assert_eq!(json["EndpointSpec"]["Ports"][0]["PublishMode"], "ingress");
    assert_eq!(json["TaskTemplate"]["ForceUpdate"], 2);
    assert_eq!(
        json["TaskTemplate"]["Placement"]["Preferences"][0]["Spread"]["SpreadDescriptor"],
        "node.labels.zone"
    );
}

#[test]
fn what_the_docker_cli_sends_on_create_is_read() {
    // `docker service create --name web --replicas 2 -p 8080:80 img sleep 1000` (20.10).
    let body = serde_json::json!({
        "Name": "web", "Labels": {},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "img", "Args": ["sleep", "1000"], "Init": false,
                "DNSConfig": {}, "Isolation": "default", "TTY": false,
                "Privileges": {"CredentialSpec": null, "SELinuxContext": null}},
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "MaxAttempts": 0},
            "Placement": {"Platforms": [{"Architecture": "amd64", "OS": "linux"}]},
            "ForceUpdate": 0, "Runtime": "container"},
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000i64,
            "MaxFailureRatio": 0, "Order": "stop-first"},
        "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5000000000i64,
            "MaxFailureRatio": 0, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "vip", "Ports": [{"Protocol": "tcp", "TargetPort": 80,
            "PublishedPort": 8080, "PublishMode": "ingress"}]}
    });
    let read: model::ServiceSpec = serde_json::from_value(gokeys::canonical(body)).expect("read");
    let spec = from_docker::service_spec(read).expect("convert");
    assert_eq!(spec.replicas, 2);
    let container = spec.task.and_then(|t| t.container).expect("container");
    assert_eq!(container.args, ["sleep", "1000"]);
    assert!(container.command.is_empty());
    assert_eq!(
        spec.endpoint.expect("endpoint").ports[0].published_port,
        8080
    );
    assert_eq!(spec.update.expect("update").parallelism, Some(1));
}

#[test]
fn fields_shoal_does_not_run_are_refused_by_name_unless_they_say_nothing() {
    let refused = |container: serde_json::Value, task: serde_json::Value| {
        let mut template = serde_json::json!({"ContainerSpec": container});
        if let (Some(t), Some(extra)) = (template.as_object_mut(), task.as_object()) {
            t.extend(extra.clone());
        }
        let body = serde_json::json!({"Name": "web", "TaskTemplate": template});
        let read: model::ServiceSpec =
            serde_json::from_value(gokeys::canonical(body)).expect("read");
        from_docker::service_spec(read)
            .err()
            .map(|e| (e.status, e.message))
    };
    let none = serde_json::json!({});
    for (field, value, named) in [
        ("TTY", serde_json::json!(true), "ContainerSpec.TTY"),
        (
            "OpenStdin",
            serde_json::json!(true),
            "ContainerSpec.OpenStdin",
        ),
        (
            "Groups",
            serde_json::json!(["wheel"]),
            "ContainerSpec.Groups",
        ),
        (
            "Hosts",
            serde_json::json!(["1.2.3.4 db"]),
            "ContainerSpec.Hosts",
        ),
        (
            "DNSConfig",
            serde_json::json!({"Nameservers": ["8.8.8.8"]}),
            "ContainerSpec.DNSConfig",
        ),
        (
            "Privileges",
            serde_json::json!({"SELinuxContext": {"Disable": true}}),
            "ContainerSpec.Privileges",
        ),
        (
            "dnsconfig",
            serde_json::json!({"Search": ["x"]}),
            "ContainerSpec.DNSConfig",
        ),
    ] {
        let (status, message) = refused(
            serde_json::json!({"Image": "img", field: value}),
            none.clone(),
        )
        .unwrap_or_else(|| panic!("{field} was accepted"));
        assert_eq!(status, hyper::StatusCode::BAD_REQUEST);
        assert!(
            message.contains(named) && message.contains("not supported"),
            "{message}"
        );
    }
    let generic = serde_json::json!({"Resources": {"Reservations": {"GenericResources": [
        {"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}}});
    let (_, message) = refused(serde_json::json!({"Image": "img"}), generic).expect("refused");
    assert!(
        message.contains("Reservations.GenericResources"),
        "{message}"
    );
    let windows = serde_json::json!({"Placement": {"Platforms": [{"OS": "windows"}]}});
    let (_, message) = refused(serde_json::json!({"Image": "img"}), windows).expect("refused");
    assert!(message.contains("Platforms"), "{message}");
    // Saying nothing is fine, as the CLI sends these on every create.
    assert_eq!(
        refused(
            serde_json::json!({"Image": "img", "TTY": false, "Hosts": [], "DNSConfig": {}, "Groups": null}),
            serde_json::json!({"Placement": {"Platforms": []}})
        ),
        None
    );
}

#[test]
fn bad_enums_are_refused_naming_the_choices() {
    let body = serde_json::json!({"Name": "web",
        "TaskTemplate": {"ContainerSpec": {"Image": "img"}, "RestartPolicy": {"Condition": "sometimes"}}});
    let read: model::ServiceSpec = serde_json::from_value(body).expect("read");
    let err = from_docker::service_spec(read).expect_err("refused");
    assert_eq!(err.status, hyper::StatusCode::BAD_REQUEST);
    assert!(
        err.message.contains("any, on-failure, none"),
        "{}",
        err.message
    );
}

#[test]
fn a_minimal_spec_sent_back_runs_the_same_tasks() {
    let spec = pb::ServiceSpec {
        name: "web".into(),
        task: Some(pb::TaskSpec {
            container: Some(pb::ContainerSpec {
                image: "web:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        replicas: 2,
        ..Default::default()
    };
    let text = serde_json::to_string(&to_docker::service_spec(&spec)).expect("json");
    let read: model::ServiceSpec = serde_json::from_str(&text).expect("read");
    let mut back = from_docker::service_spec(read).expect("convert");
    // `docker service scale web=3` changes only the count.
    back.replicas = 3;
    let task = |s: &pb::ServiceSpec| s.task.as_ref().map(pb::TaskSpec::normalized);
    assert_eq!(task(&back), task(&spec));
}
