//! Who a certificate says its holder is, and the facts read from certificates.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;

use crate::PkiError;

/// The OU of a manager's certificate.
pub const MANAGER_OU: &str = "shoal-manager";
/// The OU of a worker's certificate.
pub const WORKER_OU: &str = "shoal-worker";

/// A node's role, as its certificate states it in the OU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Manager,
    Worker,
}

impl Role {
    /// The certificate OU for this role: "shoal-manager" or "shoal-worker".
    pub fn ou(self) -> &'static str {
        match self {
            Role::Manager => MANAGER_OU,
            Role::Worker => WORKER_OU,
        }
    }

    /// The role of a certificate OU, `None` for anything else.
    pub fn from_ou(ou: &str) -> Option<Role> {
        match ou {
            MANAGER_OU => Some(Role::Manager),
            WORKER_OU => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
        })
    }
}

impl FromStr for Role {
    type Err = PkiError;

    /// "manager" or "worker" (also the OU spellings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" | MANAGER_OU => Ok(Role::Manager),
            "worker" | WORKER_OU => Ok(Role::Worker),
            _ => Err(PkiError::BadField {
                field: "role",
                value: s.to_string(),
                reason: "expected manager or worker",
            }),
        }
    }
}

/// What a node certificate says about its holder: CN = node id, OU = role, O = cluster id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub node_id: String,
    pub role: Role,
    pub cluster_id: String,
}

impl Identity {
    pub fn new(node_id: impl Into<String>, role: Role, cluster_id: impl Into<String>) -> Self {
        Identity {
            node_id: node_id.into(),
            role,
            cluster_id: cluster_id.into(),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of cluster {}",
            self.role, self.node_id, self.cluster_id
        )
    }
}

/// The identity in a DER node certificate. The certificate is not verified here: callers
/// read identities only from chains that rustls verified against the cluster's root.
pub fn identity_of_cert_der(der: &[u8]) -> Result<Identity, PkiError> {
    let cert = parse_der(der)?;
    identity_of(&cert)
}

/// The identity in the first certificate of a PEM text.
pub fn identity_of_cert_pem(cert_pem: &str) -> Result<Identity, PkiError> {
    identity_of_cert_der(&first_cert_der(cert_pem)?)
}

pub(crate) fn identity_of(cert: &X509Certificate<'_>) -> Result<Identity, PkiError> {
    let subject = cert.subject();
    let node_id = single(subject.iter_common_name(), "common name (node id)")?;
    let ou = single(
        subject.iter_organizational_unit(),
        "organizational unit (role)",
    )?;
    let cluster_id = single(subject.iter_organization(), "organization (cluster id)")?;
    let role = Role::from_ou(&ou).ok_or(PkiError::BadField {
        field: "organizational unit",
        value: ou,
        reason: "expected shoal-manager or shoal-worker",
    })?;
    if node_id.is_empty() {
        return Err(PkiError::MissingField("common name (node id)"));
    }
    if cluster_id.is_empty() {
        return Err(PkiError::MissingField("organization (cluster id)"));
    }
    Ok(Identity {
        node_id,
        role,
        cluster_id,
    })
}

fn single<'a>(
    mut attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    what: &'static str,
) -> Result<String, PkiError> {
    let attr = attrs.next().ok_or(PkiError::MissingField(what))?;
    if attrs.next().is_some() {
        return Err(PkiError::BadField {
            field: what,
            value: String::new(),
            reason: "the certificate has more than one",
        });
    }
    attr.as_str()
        .map(str::to_string)
        .map_err(|_| PkiError::BadField {
            field: what,
            value: String::new(),
            reason: "not a text string",
        })
}

/// When the first certificate of a PEM text expires; renewal is scheduled from it.
pub fn not_after(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let der = first_cert_der(cert_pem)?;
    let cert = parse_der(&der)?;
    Ok(to_system_time(cert.validity().not_after.timestamp()))
}

/// When the first certificate of a PEM text becomes valid.
pub fn not_before(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let der = first_cert_der(cert_pem)?;
    let cert = parse_der(&der)?;
    Ok(to_system_time(cert.validity().not_before.timestamp()))
}

fn to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The serial number of a DER certificate, as lowercase hex.
pub fn serial_of_cert_der(der: &[u8]) -> Result<String, PkiError> {
    Ok(hex::encode(parse_der(der)?.raw_serial()))
}

/// Hex sha256 of a certificate's DER: what a join token pins the root CA by.
pub fn digest_of_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// [`digest_of_der`] of the first certificate in a PEM text.
pub fn digest_of_pem(cert_pem: &str) -> Result<String, PkiError> {
    Ok(digest_of_der(&first_cert_der(cert_pem)?))
}

/// The first CERTIFICATE block of a PEM text.
pub fn first_cert_der(cert_pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| PkiError::parse("pem certificate", e))
}

/// Every CERTIFICATE block of a PEM text, in order; at least one.
pub fn cert_chain_der(cert_pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::parse("pem certificate", e))?;
    if chain.is_empty() {
        return Err(PkiError::parse("pem certificate", "no certificate found"));
    }
    Ok(chain)
}

pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::parse("certificate", e))?;
    if !rest.is_empty() {
        return Err(PkiError::parse(
            "certificate",
            "trailing bytes after the certificate",
        ));
    }
    Ok(cert)
}
