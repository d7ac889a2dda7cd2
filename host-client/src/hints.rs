//! What to do about an error, where its cause is likely: said after the error, on its line.

use std::path::Path;

use ferry_certs::rustls::{self, AlertDescription, CertificateError};
use ferry_client::{split_server, ClientError, DEFAULT_PORT};

/// A hint for `error`, given the file holding the CA the client trusts.
pub(crate) fn hint(error: &anyhow::Error, ca_file: Option<&Path>) -> Option<String> {
    match error.downcast_ref::<ClientError>()? {
        ClientError::Connect { server, cause }
            if cause.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Some(refused_hint(server))
        }
        ClientError::Tls { cause, .. } => tls_hint(cause, ca_file),
        ClientError::Io { path, source }
            if path.is_dir() && source.kind() == std::io::ErrorKind::InvalidInput =>
        {
            Some("it is a directory: use -r to upload it with every file below it".into())
        }
        _ => None,
    }
}

fn refused_hint(server: &str) -> String {
    let port = split_server(server).map_or(DEFAULT_PORT, |(_, port)| port);
    if port == DEFAULT_PORT {
        format!("is ferry-server running on {server}?")
    } else {
        format!("is ferry-server running on {server}? (Ferry's default port is {DEFAULT_PORT})")
    }
}

fn tls_hint(error: &rustls::Error, ca_file: Option<&Path>) -> Option<String> {
    use rustls::Error::{AlertReceived, InvalidCertificate, InvalidMessage};
    match error {
        InvalidCertificate(CertificateError::BadSignature | CertificateError::UnknownIssuer) => {
            Some(match ca_file {
                Some(file) => format!(
                    "the server's certificate is not from the CA in {}",
                    file.display()
                ),
                None => "the server's certificate is not from this client's CA".into(),
            })
        }
        AlertReceived(
            AlertDescription::DecryptError
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRevoked,
        ) => Some(
            "the server refused this client's certificate: issued by another CA, or revoked".into(),
        ),
        InvalidMessage(rustls::InvalidMessage::InvalidContentType) => Some(format!(
            "not a Ferry server: this looks like the web page (HTTP); Ferry listens on {DEFAULT_PORT}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(cause: rustls::Error) -> anyhow::Error {
        ClientError::Tls {
            server: "h:9000".into(),
            cause,
        }
        .into()
    }

    #[test]
    fn likely_causes_get_a_hint() {
        let refused = |server: &str| -> anyhow::Error {
            ClientError::Connect {
                server: server.into(),
                cause: std::io::ErrorKind::ConnectionRefused.into(),
            }
            .into()
        };
        assert_eq!(
            hint(&refused("h:9000"), None).unwrap(),
            "is ferry-server running on h:9000?"
        );
        assert!(hint(&refused("h:8080"), None)
            .unwrap()
            .ends_with("(Ferry's default port is 9000)"));
        let other_ca = tls(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ));
        assert_eq!(
            hint(&other_ca, Some(Path::new("/i.pem"))).unwrap(),
            "the server's certificate is not from the CA in /i.pem"
        );
        let refused_client = tls(rustls::Error::AlertReceived(AlertDescription::DecryptError));
        assert!(hint(&refused_client, None)
            .unwrap()
            .contains("refused this client"));
        let http = tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert!(hint(&http, None).unwrap().contains("web page (HTTP)"));
        let timeout: anyhow::Error = ClientError::Connect {
            server: "h:1".into(),
            cause: std::io::ErrorKind::TimedOut.into(),
        }
        .into();
        assert_eq!(hint(&timeout, None), None);
    }
}
