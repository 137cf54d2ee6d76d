//! The cluster's root CA and a node's own key pair.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;

use crate::identity::{digest_of_der, first_cert_der, parse_der, Identity, Role};
use crate::PkiError;

/// The CN of every Shoal root CA.
pub const ROOT_CA_CN: &str = "shoal-root-ca";
/// The DNS name every manager certificate carries; clients verify managers against it.
pub const MANAGER_SAN: &str = "manager.shoal";
/// The DNS name every node certificate carries.
pub const NODE_SAN: &str = "node.shoal";

/// How long a new root CA is valid (Swarm's default: 20 years).
pub const ROOT_CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Node certificates are valid from this long before they are signed, for clock skew.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// A cluster's root CA: its self-signed certificate and its key. Only managers hold one.
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    digest: String,
    cluster_id: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("cluster_id", &self.cluster_id)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl RootCa {
    /// A new self-signed root for a new cluster: CN "shoal-root-ca", O = the cluster id.
    pub fn generate(cluster_id: &str) -> Result<Self, PkiError> {
        check_cluster_id(cluster_id)?;
        let key = new_root_key()?;
        let cert = root_params(cluster_id, None)
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the root ca certificate",
                source,
            })?;
        Self::from_parts(cert.pem(), key)
    }

    /// The root to rotate to (`swarm ca --rotate`): a new key and a name of its own (OU = a
    /// fresh tag, so the two roots never share a subject), with its certificate also signed
    /// by this root (the cross-signed intermediate, PEM). A node that still trusts only this
    /// root accepts a certificate the new root signed when it comes with that intermediate.
    pub fn next(&self) -> Result<(RootCa, String), PkiError> {
        let key = new_root_key()?;
        let tag = format!("root-{:012x}", rand::random::<u64>() >> 16);
        let mut params = root_params(&self.cluster_id, Some(&tag));
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "the new root ca certificate",
                source,
            })?;
        params.serial_number = Some(random_serial());
        let cross = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "the cross-signed root ca certificate",
                source,
            })?;
        Ok((Self::from_parts(cert.pem(), key)?, cross.pem()))
    }

    /// A root CA from stored PEM texts. Refuses a key that does not match the certificate
    /// and a certificate that is not a Shoal root.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::parse("root ca key", e))?;
        Self::from_parts(cert_pem.to_string(), key)
    }

    fn from_parts(cert_pem: String, key: KeyPair) -> Result<Self, PkiError> {
        let cert_der = first_cert_der(&cert_pem)?;
        let cluster_id = {
            let cert = parse_der(&cert_der)?;
            let subject = cert.subject();
            let cn = subject
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok());
            if cn != Some(ROOT_CA_CN) {
                return Err(PkiError::BadField {
                    field: "root ca common name",
                    value: cn.unwrap_or_default().to_string(),
                    reason: "a shoal root ca is named shoal-root-ca",
                });
            }
            if !cert.is_ca() {
                return Err(PkiError::BadField {
                    field: "root ca basic constraints",
                    value: String::new(),
                    reason: "the certificate is not a ca",
                });
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(PkiError::RootKeyMismatch);
            }
            let cluster_id = subject
                .iter_organization()
                .next()
                .and_then(|a| a.as_str().ok())
                .ok_or(PkiError::MissingField("organization (cluster id)"))?
                .to_string();
            cluster_id
        };
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| PkiError::parse("root ca certificate", e))?;
        Ok(RootCa {
            digest: digest_of_der(&cert_der),
            cert_pem,
            cert_der,
            cluster_id,
            issuer,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The root key, PEM (PKCS#8). Store it only where managers keep secrets.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Hex sha256 of the root certificate's DER; join tokens carry it.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    /// The cluster this root signs for (its O).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Signs a node's CSR. Only the CSR's public key is used (its signature is checked):
    /// the CA sets CN = node id, OU = role, O = cluster id, the SANs ("manager.shoal" for
    /// managers, "node.shoal", the node id) and validity now-1min .. now+expiry.
    /// Returns the certificate, PEM.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        expiry: Duration,
    ) -> Result<String, PkiError> {
        let sign_err = |reason: String| PkiError::Sign {
            node_id: identity.node_id.clone(),
            reason,
        };
        if identity.cluster_id != self.cluster_id {
            return Err(sign_err(format!(
                "the identity is for cluster {}, this ca signs for cluster {}",
                identity.cluster_id, self.cluster_id
            )));
        }
        check_node_id(&identity.node_id)?;
        if expiry.is_zero() {
            return Err(sign_err("the expiry is zero".to_string()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::parse("certificate signing request", e))?;

        let now = SystemTime::now();
        let not_after = now
            .checked_add(expiry)
            .ok_or_else(|| sign_err(format!("the expiry {expiry:?} is too far away")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.node_id.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, identity.role.ou());
        params
            .distinguished_name
            .push(DnType::OrganizationName, identity.cluster_id.as_str());
        let mut names = Vec::with_capacity(3);
        if identity.role == Role::Manager {
            names.push(MANAGER_SAN.to_string());
        }
        names.push(NODE_SAN.to_string());
        names.push(identity.node_id.clone());
        for name in names {
            let name = name
                .try_into()
                .map_err(|e: rcgen::Error| sign_err(e.to_string()))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| sign_err(e.to_string()))?;
        Ok(cert.pem())
    }
}

fn new_root_key() -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "the root ca key",
        source,
    })
}

/// A root CA certificate's fields: CN "shoal-root-ca", O = the cluster id, OU = `tag` for
/// a root made by rotation.
fn root_params(cluster_id: &str, tag: Option<&str>) -> CertificateParams {
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, ROOT_CA_CN);
    params
        .distinguished_name
        .push(DnType::OrganizationName, cluster_id);
    if let Some(tag) = tag {
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, tag);
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + ROOT_CA_VALIDITY).into();
    params.serial_number = Some(random_serial());
    params
}

/// A node's own key pair (ECDSA P-256). The private key never leaves the node: the node
/// sends a CSR and gets back a certificate.
pub struct NodeKey {
    key: KeyPair,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}

impl NodeKey {
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: "the node key",
            source,
        })?;
        Ok(NodeKey { key })
    }

    pub fn from_pem(key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::parse("node key", e))?;
        Ok(NodeKey { key })
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A CSR for this key with an empty subject: the CA decides the identity.
    pub fn csr_pem(&self) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&self.key)
            .map_err(|source| PkiError::Generate {
                what: "the certificate signing request",
                source,
            })?;
        csr.pem().map_err(|source| PkiError::Generate {
            what: "the certificate signing request",
            source,
        })
    }

    /// Whether the first certificate of `cert_pem` is for this key.
    pub fn matches_cert(&self, cert_pem: &str) -> Result<bool, PkiError> {
        let der = first_cert_der(cert_pem)?;
        let cert = parse_der(&der)?;
        Ok(cert.public_key().subject_public_key.data.as_ref() == self.key.public_key_raw())
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // A positive INTEGER with no leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn check_cluster_id(cluster_id: &str) -> Result<(), PkiError> {
    if cluster_id.is_empty() || cluster_id.len() > 64 || cluster_id.chars().any(char::is_control) {
        return Err(PkiError::BadField {
            field: "cluster id",
            value: cluster_id.to_string(),
            reason: "expected 1 to 64 printable characters",
        });
    }
    Ok(())
}

/// Node ids are DNS names in certificates: letters, digits, '-' and '.'.
fn check_node_id(node_id: &str) -> Result<(), PkiError> {
    let ok = !node_id.is_empty()
        && node_id.len() <= 63
        && node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !node_id.starts_with(['-', '.'])
        && !node_id.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(PkiError::BadField {
            field: "node id",
            value: node_id.to_string(),
            reason: "a node id is 1 to 63 letters, digits, '-' or '.' (it is a dns name)",
        })
    }
}
