//! Docker's Engine API on TCP, served only with mutual TLS (issue 13), as dockerd's
//! `--tlsverify`: Debian's docker CLI with `DOCKER_TLS_VERIFY=1` and a client certificate
//! of the configured CA works; one from another CA, or none, is refused at the handshake;
//! a tcp:// address without the TLS files is refused at start, saying what to give.

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use shoal_tests::{bin_dir, require_env, Node};

/// A CA: its PEM and what signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("a key");
    let pem = params.self_signed(&key).expect("self-signed").pem();
    (pem, Issuer::new(params, key))
}

/// A leaf `issuer` signs: (cert PEM, key PEM).
fn leaf(issuer: &Issuer<'static, KeyPair>, server: bool) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "shoal-test");
    if server {
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

/// DOCKER_CERT_PATH's layout: ca.pem, cert.pem, key.pem.
fn write_dir(dir: &Path, ca: &str, (cert, key): &(String, String)) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("ca.pem"), ca).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), cert).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key).expect("key.pem");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Debian's docker CLI (20.10) against `host` with the client files in `certs`.
fn docker(host: &str, certs: &Path, args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs)
        .output()
        .expect("running docker")
}

#[test]
fn tcp_is_served_with_mutual_tls_only() {
    require_env!();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, trusted) = ca("shoal-test-ca");
    let (_, rogue) = ca("another-ca");
    let server = dir.path().join("server");
    write_dir(&server, &ca_pem, &leaf(&trusted, true));
    let client = dir.path().join("client");
    write_dir(&client, &ca_pem, &leaf(&trusted, false));
    // The server's CA (so the client trusts the server), a certificate of another's.
    let stranger = dir.path().join("stranger");
    write_dir(&stranger, &ca_pem, &leaf(&rogue, false));

    // TCP without the TLS files: refused at start, naming them.
    let refused = Command::new(bin_dir().join("shoald"))
        .args(["--data-dir", &dir.path().join("d0").display().to_string()])
        .args([
            "--socket",
            &dir.path().join("s0.sock").display().to_string(),
        ])
        .args(["--docker-api", "tcp://127.0.0.1:1"])
        .output()
        .expect("running shoald");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("only with mutual TLS") && said.contains("--docker-api-tlscacert"),
        "{said}"
    );

    let port = free_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let file = |name: &str| server.join(name).display().to_string();
    let node = Node::start_env(
        "dockertls",
        &[
            ("SHOALD_DOCKER_API", addr.as_str()),
            ("SHOALD_DOCKER_API_TLSCACERT", &file("ca.pem")),
            ("SHOALD_DOCKER_API_TLSCERT", &file("cert.pem")),
            ("SHOALD_DOCKER_API_TLSKEY", &file("key.pem")),
        ],
    )
    .expect("shoald starts");
    node.init();

    let listed = docker(&addr, &client, &["node", "ls", "--format", "{{.Hostname}}"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), node.name);

    // A client certificate of another CA is refused at the handshake.
    let strange = docker(&addr, &stranger, &["node", "ls"]);
    assert!(!strange.status.success(), "a stranger's certificate got in");
    // No client certificate at all: refused too.
    let bare = Command::new("curl")
        .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/_ping"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&bare.stdout),
        "000",
        "no certificate, yet an answer"
    );
}
