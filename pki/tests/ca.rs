//! The CA, identities, tokens and certificate files, without any network.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use shoal_pki::vault::DataKey;
use shoal_pki::{
    digest_of_pem, identity_of_cert_der, identity_of_cert_pem, not_after, Identity, JoinToken,
    NodeCerts, NodeKey, PkiError, Role, RootCa,
};

fn sign(ca: &RootCa, node_id: &str, role: Role) -> NodeCerts {
    let key = NodeKey::generate().expect("node key");
    let csr = key.csr_pem().expect("csr");
    let identity = Identity::new(node_id, role, ca.cluster_id());
    let cert_pem = ca
        .sign_csr(&csr, &identity, Duration::from_secs(3600))
        .expect("sign");
    NodeCerts {
        cert_pem,
        key_pem: key.key_pem(),
        root_pem: ca.cert_pem().to_string(),
    }
}

#[test]
fn ca_signs_a_csr_with_the_identity_it_chooses() {
    let ca = RootCa::generate("cluster1").expect("ca");
    assert_eq!(ca.cluster_id(), "cluster1");
    for role in [Role::Manager, Role::Worker] {
        let certs = sign(&ca, "node7abc", role);
        assert_eq!(
            certs.identity().expect("identity"),
            Identity::new("node7abc", role, "cluster1")
        );
        let der = shoal_pki::first_cert_der(&certs.cert_pem).expect("der");
        assert_eq!(
            identity_of_cert_der(&der).expect("identity"),
            Identity::new("node7abc", role, "cluster1")
        );

        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .expect("san ext")
            .expect("san present")
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        let mut expected = vec![];
        if role == Role::Manager {
            expected.push("DNSName(manager.shoal)".to_string());
        }
        expected.push("DNSName(node.shoal)".to_string());
        expected.push("DNSName(node7abc)".to_string());
        assert_eq!(sans, expected);
        assert_eq!(
            cert.issuer().to_string(),
            "CN=shoal-root-ca, O=cluster1",
            "issued by the root"
        );

        // Validity: now-1min .. now+expiry.
        let end = not_after(&certs.cert_pem).expect("not after");
        let expected_end = SystemTime::now() + Duration::from_secs(3600);
        let skew = expected_end
            .duration_since(end)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(10), "not_after off by {skew:?}");
        let start = shoal_pki::not_before(&certs.cert_pem).expect("not before");
        let back = SystemTime::now()
            .duration_since(start)
            .expect("in the past");
        assert!(back >= Duration::from_secs(59) && back < Duration::from_secs(70));
    }
}

#[test]
fn the_csr_carries_no_identity_and_a_forged_subject_is_ignored() {
    let ca = RootCa::generate("c1").expect("ca");
    // A CSR whose subject claims to be a manager of another cluster.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "shoal-manager");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "evil");
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let cert = ca
        .sign_csr(
            &csr,
            &Identity::new("w1", Role::Worker, "c1"),
            Duration::from_secs(60),
        )
        .expect("sign");
    assert_eq!(
        identity_of_cert_pem(&cert).expect("identity"),
        Identity::new("w1", Role::Worker, "c1")
    );
}

#[test]
fn the_ca_refuses_bad_input_without_panicking() {
    let ca = RootCa::generate("c1").expect("ca");
    let key = NodeKey::generate().expect("key");
    let csr = key.csr_pem().expect("csr");
    let id = Identity::new("n1", Role::Worker, "c1");

    let err = ca
        .sign_csr("garbage", &id, Duration::from_secs(60))
        .expect_err("must fail");
    assert!(
        err.to_string()
            .starts_with("cannot parse certificate signing request"),
        "{err}"
    );
    let err = ca
        .sign_csr(
            &csr,
            &Identity::new("n1", Role::Worker, "other"),
            Duration::from_secs(60),
        )
        .expect_err("must fail");
    assert!(
        err.to_string().contains("this ca signs for cluster c1"),
        "{err}"
    );
    let err = ca
        .sign_csr(
            &csr,
            &Identity::new("bad id!", Role::Worker, "c1"),
            Duration::from_secs(60),
        )
        .expect_err("must fail");
    assert!(err.to_string().contains("node id"), "{err}");
    assert!(ca.sign_csr(&csr, &id, Duration::ZERO).is_err());

    // A tampered CSR fails its signature check.
    let mut lines: Vec<String> = csr.lines().map(str::to_string).collect();
    let last_body = lines.len() - 2;
    let flipped: String = lines[last_body]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 2 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    lines[last_body] = flipped;
    let tampered = lines.join("\n");
    assert_ne!(tampered, csr);
    assert!(ca
        .sign_csr(&tampered, &id, Duration::from_secs(60))
        .is_err());

    // The root itself has no node identity.
    assert!(identity_of_cert_pem(ca.cert_pem()).is_err());
    assert!(identity_of_cert_der(b"\x30\x03\x02\x01").is_err());
    assert!(identity_of_cert_der(&[]).is_err());
    assert!(not_after("not pem").is_err());
    assert!(digest_of_pem("").is_err());
}

#[test]
fn the_root_digest_is_stable_across_a_pem_round_trip() {
    let ca = RootCa::generate("c1").expect("ca");
    let digest = ca.digest();
    assert_eq!(digest.len(), 64);
    assert_eq!(digest_of_pem(ca.cert_pem()).expect("digest"), digest);

    let again = RootCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("from pem");
    assert_eq!(again.digest(), digest);
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(again.cluster_id(), "c1");

    // The reloaded CA signs certificates that chain to the same root.
    let certs = sign(&again, "n2", Role::Manager);
    assert_eq!(certs.identity().expect("identity").cluster_id, "c1");

    // A different root: different digest; a key from another root is refused.
    let other = RootCa::generate("c1").expect("ca");
    assert_ne!(other.digest(), digest);
    let err = RootCa::from_pem(ca.cert_pem(), &other.key_pem()).expect_err("must fail");
    assert!(matches!(err, PkiError::RootKeyMismatch), "{err}");
    // A node certificate is not a root.
    let err = RootCa::from_pem(&certs.cert_pem, &certs.key_pem).expect_err("must fail");
    assert!(err.to_string().contains("root ca"), "{err}");
    assert!(RootCa::from_pem("x", "y").is_err());
    assert!(RootCa::generate("").is_err());
}

#[test]
fn join_tokens_round_trip() {
    let ca = RootCa::generate("c1").expect("ca");
    let worker = JoinToken::generate(&ca.digest());
    let manager = JoinToken::generate(&ca.digest());
    assert_ne!(worker.secret, manager.secret);
    assert_eq!(worker.secret.len(), 25);
    assert!(worker
        .secret
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));

    let text = worker.to_string();
    assert_eq!(text, format!("SHTKN-1-{}-{}", ca.digest(), worker.secret));
    let parsed = JoinToken::parse(&text).expect("parse");
    assert_eq!(parsed, worker);
    assert_eq!(parsed.digest, ca.digest());
    assert!(worker.matches(&parsed));
    assert!(!worker.matches(&manager));
    assert_eq!(
        JoinToken::parse(&format!("  {text}\n")).expect("trimmed"),
        worker
    );
    assert!(
        !format!("{worker:?}").contains(&worker.secret),
        "debug hides the secret"
    );
}

#[test]
fn malformed_join_tokens_are_refused_with_a_clear_message() {
    let digest = "a".repeat(64);
    let secret = "0123456789abcdefghijklmno";
    let cases = [
        String::new(),
        "SHTKN".to_string(),
        format!("SHTKN-1-{digest}"),
        format!("SHTKN-2-{digest}-{secret}"),
        format!("SWMTKN-1-{digest}-{secret}"),
        format!("shtkn-1-{digest}-{secret}"),
        format!("SHTKN-1-{}-{secret}", &digest[1..]),
        format!("SHTKN-1-{}-{secret}", "g".repeat(64)),
        format!("SHTKN-1-{}-{secret}", "A".repeat(64)),
        format!("SHTKN-1-{digest}-{}", &secret[1..]),
        format!("SHTKN-1-{digest}-{}", secret.to_uppercase()),
        format!("SHTKN-1-{digest}-{secret}-x"),
        format!("SHTKN-1-{digest}-{secret}x"),
        format!("SHTKN-1-{digest}-{}é", &secret[..24]),
    ];
    for case in cases {
        let err = JoinToken::parse(&case).expect_err(&case);
        assert_eq!(
            err.to_string(),
            "invalid join token: expected SHTKN-1-<digest>-<secret>",
            "{case}"
        );
    }
    assert!(JoinToken::parse(&format!("SHTKN-1-{digest}-{secret}")).is_ok());
}

#[test]
fn node_certs_save_and_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certs");
    assert_eq!(NodeCerts::load(&path, None).expect("load"), None);

    let ca = RootCa::generate("c1").expect("ca");
    let certs = sign(&ca, "n1", Role::Worker);
    certs.save(&path, None).expect("save");
    let mode = std::fs::metadata(path.join(shoal_pki::KEY_FILE))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        NodeCerts::load(&path, None).expect("load"),
        Some(certs.clone())
    );

    // Renewal overwrites in place.
    let renewed = sign(&ca, "n1", Role::Manager);
    renewed.save(&path, None).expect("save again");
    let loaded = NodeCerts::load(&path, None)
        .expect("load")
        .expect("present");
    assert_eq!(loaded.identity().expect("identity").role, Role::Manager);
    let mode = std::fs::metadata(path.join(shoal_pki::KEY_FILE))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A key that does not match the certificate is refused, on save and on load.
    let mismatched = NodeCerts {
        key_pem: certs.key_pem.clone(),
        ..renewed.clone()
    };
    let err = mismatched.save(&path, None).expect_err("must fail");
    assert!(
        err.to_string().contains("does not match the node key"),
        "{err}"
    );
    std::fs::write(path.join(shoal_pki::KEY_FILE), &certs.key_pem).expect("write");
    let err = NodeCerts::load(&path, None).expect_err("must fail");
    assert!(
        err.to_string().contains("does not match the node key"),
        "{err}"
    );

    // A partial set is an error that names the missing file.
    std::fs::remove_file(path.join(shoal_pki::ROOT_FILE)).expect("rm");
    let err = NodeCerts::load(&path, None).expect_err("must fail");
    assert!(err.to_string().contains(shoal_pki::ROOT_FILE), "{err}");
}

#[test]
fn a_node_key_saved_with_a_data_key_is_sealed_and_opens_only_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("certs");
    let ca = RootCa::generate("c1").expect("ca");
    let certs = sign(&ca, "n1", Role::Manager);
    let key = DataKey::generate().expect("data key");

    certs.save(&path, Some(&key)).expect("save");
    let on_disk = std::fs::read_to_string(path.join(shoal_pki::KEY_FILE)).expect("key file");
    assert!(!on_disk.contains("PRIVATE KEY"), "sealed: {on_disk}");
    assert!(!on_disk.contains(certs.key_pem.trim()), "no clear text");
    assert_eq!(
        NodeCerts::load(&path, Some(&key)).expect("load"),
        Some(certs.clone())
    );

    // Without the key (a locked manager), and with another key: refused, saying why.
    let err = NodeCerts::load(&path, None).expect_err("sealed");
    assert!(err.to_string().contains("swarm unlock"), "{err}");
    let other = DataKey::generate().expect("data key");
    let err = NodeCerts::load(&path, Some(&other)).expect_err("another key");
    assert!(
        err.to_string()
            .contains("does not open with this node's data key"),
        "{err}"
    );

    // A clear key (a node from before sealing) is sealed when loaded with a data key.
    certs.save(&path, None).expect("save clear");
    assert_eq!(
        NodeCerts::load(&path, Some(&key)).expect("load"),
        Some(certs.clone())
    );
    let on_disk = std::fs::read_to_string(path.join(shoal_pki::KEY_FILE)).expect("key file");
    assert!(
        !on_disk.contains("PRIVATE KEY"),
        "sealed on load: {on_disk}"
    );
    let mode = std::fs::metadata(path.join(shoal_pki::KEY_FILE))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
