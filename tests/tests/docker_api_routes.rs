//! Docker's Engine API on one real shoald (issue 13): every route answers a missing object
//! with 404 and a bad body with 400, in Docker's JSON error shape; versions from 1.24 to
//! 1.41 are served, others refused; a node in no swarm answers as dockerd does.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use shoal_tests::{require_env, Node};

/// One HTTP/1.1 exchange on the socket: status, headers (lowercased names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn message(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {:?}", self.body));
        json["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message in {:?}", self.body))
            .to_string()
    }
}

fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> Answer {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

#[track_caller]
fn expect_error(answer: &Answer, status: u16, contains: &str, what: &str) {
    assert_eq!(
        answer.status, status,
        "{what}: status {} (body {:?}), expected {status}",
        answer.status, answer.body
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}: content type"
    );
    let message = answer.message();
    assert!(
        message.contains(contains),
        "{what}: message {message:?} lacks {contains:?}"
    );
}

#[test]
fn every_route_answers_missing_objects_with_404_and_bad_bodies_with_400() {
    require_env!();
    let node = Node::start("dockerapi").expect("shoald starts");
    let api = node.docker_api();

    // Before the swarm: dockerd's 503 and words.
    let before = http(&api, "GET", "/v1.41/services", None);
    expect_error(&before, 503, "docker swarm init", "services before init");
    let ping = http(&api, "HEAD", "/_ping", None);
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("swarm"), Some("inactive"));
    node.init();
    let ping = http(&api, "GET", "/_ping", None);
    assert_eq!((ping.status, ping.body.as_str()), (200, "OK"));
    assert_eq!(ping.header("api-version"), Some("1.41"));
    assert_eq!(ping.header("ostype"), Some("linux"));
    assert_eq!(ping.header("swarm"), Some("active/manager"));

    // Versions: unversioned and 1.24..=1.41 answered; others refused naming the range.
    for prefix in ["", "/v1.24", "/v1.30", "/v1.41"] {
        let nodes = http(&api, "GET", &format!("{prefix}/nodes"), None);
        assert_eq!(nodes.status, 200, "{prefix}/nodes: {}", nodes.body);
        let list: serde_json::Value = serde_json::from_str(&nodes.body).expect("json");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{}", nodes.body);
    }
    expect_error(
        &http(&api, "GET", "/v1.99/nodes", None),
        400,
        "Maximum supported API version is 1.41",
        "v1.99",
    );
    expect_error(
        &http(&api, "GET", "/v1.12/nodes", None),
        400,
        "Minimum supported API version is 1.24",
        "v1.12",
    );
    expect_error(
        &http(&api, "GET", "/v1.41/nothere", None),
        404,
        "page not found",
        "unknown route",
    );

    // A missing object: 404 on every route that names one.
    let missing = [
        ("GET", "/v1.41/nodes/nope", "node nope"),
        ("POST", "/v1.41/nodes/nope/update?version=1", "node nope"),
        ("DELETE", "/v1.41/nodes/nope", "node nope"),
        ("GET", "/v1.41/services/nope", "service nope"),
        (
            "POST",
            "/v1.41/services/nope/update?version=1",
            "service nope",
        ),
        ("DELETE", "/v1.41/services/nope", "service nope"),
        ("GET", "/v1.41/services/nope/logs?stdout=1", "nope"),
        ("GET", "/v1.41/tasks/nope", "task nope"),
        ("GET", "/v1.41/networks/nope", "network nope"),
        ("DELETE", "/v1.41/networks/nope", "network nope"),
        ("GET", "/v1.41/secrets/nope", "secret nope"),
        ("DELETE", "/v1.41/secrets/nope", "secret nope"),
        ("GET", "/v1.41/configs/nope", "config nope"),
        ("DELETE", "/v1.41/configs/nope", "config nope"),
    ];
    let bodies = [
        r#"{"Spec":{}}"#.to_string(),
        r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"i"}}}"#.to_string(),
    ];
    for (method, path, what) in missing {
        let body = path.contains("update").then(|| {
            if path.contains("nodes") {
                bodies[0].as_str()
            } else {
                bodies[1].as_str()
            }
        });
        let answer = http(&api, method, path, body);
        expect_error(&answer, 404, what, &format!("{method} {path}"));
    }

    // A bad body: 400 on every route that reads one, saying what is wrong.
    let bad = [
        ("/v1.41/services/create", "not json", "invalid JSON"),
        (
            "/v1.41/services/create",
            r#"{"Name": 5}"#,
            "invalid service spec",
        ),
        (
            "/v1.41/services/create",
            r#"{"Name":"x"}"#,
            "ContainerSpec is missing",
        ),
        (
            "/v1.41/services/create",
            r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Image":"i"},"RestartPolicy":{"Condition":"sometimes"}}}"#,
            "invalid restart condition",
        ),
        ("/v1.41/networks/create", "{", "invalid JSON"),
        (
            "/v1.41/networks/create",
            r#"{"Name":"n","Driver":"bridge"}"#,
            "use -d overlay",
        ),
        (
            "/v1.41/secrets/create",
            r#"{"Name":"s","Data":"%%%"}"#,
            "base64",
        ),
        ("/v1.41/secrets/create", "", "no body"),
        (
            "/v1.41/configs/create",
            r#"{"Name":["c"]}"#,
            "invalid config spec",
        ),
        (
            "/v1.41/nodes/self/update?version=x",
            "{}",
            "invalid version",
        ),
    ];
    for (path, body, says) in bad {
        let answer = http(&api, "POST", path, Some(body));
        expect_error(&answer, 400, says, &format!("POST {path} {body}"));
    }
    expect_error(
        &http(
            &api,
            "GET",
            "/v1.41/services?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
            None,
        ),
        400,
        "invalid filter 'colour'",
        "unknown filter",
    );
    expect_error(
        &http(&api, "GET", "/v1.41/services/x/logs", None),
        400,
        "at least one stream",
        "logs without a stream",
    );

    // Keys in any case are read as Go reads them; a write with an old version is refused
    // only when the spec changed since.
    let created = http(
        &api,
        "POST",
        "/v1.41/secrets/create",
        Some(r#"{"name":"token","DATA":"czNjcjN0"}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    // A name taken is Docker's 409, as `stack deploy` expects of it.
    expect_error(
        &http(
            &api,
            "POST",
            "/v1.41/secrets/create",
            Some(r#"{"Name":"token","Data":"czNjcjN0"}"#),
        ),
        409,
        "already exists",
        "a secret's name taken",
    );
    let secret = http(&api, "GET", "/v1.41/secrets/token", None);
    assert_eq!(secret.status, 200, "{}", secret.body);
    let secret: serde_json::Value = serde_json::from_str(&secret.body).expect("json");
    assert_eq!(secret["Spec"]["Name"], "token");
    assert!(
        secret["Spec"].get("Data").is_none(),
        "a secret's data is never answered"
    );
    assert_eq!(
        http(&api, "DELETE", "/v1.41/secrets/token", None).status,
        204
    );
}
