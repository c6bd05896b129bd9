//! `X-Twilio-Signature` vectors computed by an independent implementation, twilio-python's
//! `RequestValidator` (`tests/data/gen_twilio_python_vectors.py` made
//! `tests/data/twilio_python_vectors.json`; its header says how to rerun it). The project's
//! other tests sign WebSocket upgrades with its own `sign_websocket`, so a wrong canonical URL
//! would pass there; here every signature comes from Twilio's helper library.

use serde::Deserialize;
use voxbridge_twilio::signature::{body_sha256_hex, json_webhook_url};
use voxbridge_twilio::{RequestValidator, SignatureError};

const VECTORS: &str = include_str!("data/twilio_python_vectors.json");

#[derive(Deserialize)]
struct Document {
    library: String,
    auth_token: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    #[serde(flatten)]
    kind: Kind,
    signed_url: String,
    signature: String,
    /// URLs twilio-python's `validate` accepts for this signature.
    accepts: Vec<String>,
    /// URLs twilio-python's `validate` rejects for this signature.
    rejects: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Kind {
    Websocket {
        /// The `https://` (first) and trailing-`/` forms a server may see (voxbridge's
        /// tolerances).
        server_urls: Vec<String>,
    },
    Form {
        params: Vec<(String, String)>,
    },
    Json {
        url: String,
        body: String,
        body_sha256: String,
        tampered_body: String,
    },
}

fn document() -> Document {
    serde_json::from_str(VECTORS).expect("twilio_python_vectors.json parses")
}

/// `signature` with its first character changed: same length, different value.
fn tampered(signature: &str) -> String {
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &signature[1..])
}

/// Checks one URL with the validator the server would use for this kind of request.
fn validate(
    validator: &RequestValidator,
    vector: &Vector,
    url: &str,
    signature: &str,
) -> Result<(), SignatureError> {
    match &vector.kind {
        Kind::Websocket { .. } => validator.validate_websocket(url, signature),
        Kind::Form { params } => validator.validate_form(url, params, signature),
        Kind::Json { body, .. } => validator.validate_json(url, body.as_bytes(), signature),
    }
}

#[test]
fn fixture_covers_every_kind_from_twilio_python() {
    let document = document();
    assert!(document.library.starts_with("twilio-python "));
    let count = |pick: fn(&Kind) -> bool| document.vectors.iter().filter(|v| pick(&v.kind)).count();
    assert!(count(|k| matches!(k, Kind::Websocket { .. })) >= 5);
    assert!(count(|k| matches!(k, Kind::Form { .. })) >= 5);
    assert!(count(|k| matches!(k, Kind::Json { .. })) >= 3);
    assert!(
        document
            .vectors
            .iter()
            .any(|v| v.signed_url.starts_with("wss://") && v.signed_url.contains(":8443")),
        "a wss vector with a port"
    );
}

#[test]
fn signer_produces_every_twilio_python_signature() {
    let document = document();
    let validator = RequestValidator::new(&document.auth_token);
    for vector in &document.vectors {
        let name = &vector.name;
        let signed = match &vector.kind {
            Kind::Websocket { .. } => validator.sign_websocket(&vector.signed_url),
            Kind::Form { params } => validator.sign(&vector.signed_url, params),
            Kind::Json { .. } => validator.sign(&vector.signed_url, &[]),
        };
        assert_eq!(
            signed, vector.signature,
            "{name}: sign({})",
            vector.signed_url
        );
        if let Kind::Websocket { server_urls } = &vector.kind {
            // A server behind TLS termination knows its URL as https://; Twilio signed wss://.
            let http_form = &server_urls[0];
            assert_eq!(
                validator.sign_websocket(http_form),
                vector.signature,
                "{name}: sign_websocket({http_form})"
            );
        }
        if let Kind::Json {
            url,
            body,
            body_sha256,
            ..
        } = &vector.kind
        {
            assert_eq!(&body_sha256_hex(body.as_bytes()), body_sha256, "{name}");
            assert_eq!(
                json_webhook_url(url, body.as_bytes()),
                vector.signed_url,
                "{name}"
            );
        }
    }
}

#[test]
fn validator_accepts_what_twilio_python_accepts() {
    let document = document();
    let validator = RequestValidator::new(&document.auth_token);
    for vector in &document.vectors {
        assert!(
            vector.accepts.contains(&vector.signed_url),
            "{}: fixture lists the signed URL",
            vector.name
        );
        for url in &vector.accepts {
            assert_eq!(
                validate(&validator, vector, url, &vector.signature),
                Ok(()),
                "{}: seen as {url}, signed over {}",
                vector.name,
                vector.signed_url
            );
        }
        if let Kind::Websocket { server_urls } = &vector.kind {
            for url in server_urls {
                assert_eq!(
                    validator.validate_websocket(url, &vector.signature),
                    Ok(()),
                    "{}: upgrade seen as {url}, signed over {}",
                    vector.name,
                    vector.signed_url
                );
            }
        }
    }
}

#[test]
fn validator_rejects_what_twilio_python_rejects_and_tampered_signatures() {
    let document = document();
    let validator = RequestValidator::new(&document.auth_token);
    for vector in &document.vectors {
        let name = &vector.name;
        assert!(!vector.rejects.is_empty(), "{name}: fixture lists rejects");
        for url in &vector.rejects {
            assert_eq!(
                validate(&validator, vector, url, &vector.signature),
                Err(SignatureError::Mismatch),
                "{name}: seen as {url}, signed over {}",
                vector.signed_url
            );
        }
        for url in &vector.accepts {
            assert_eq!(
                validate(&validator, vector, url, &tampered(&vector.signature)),
                Err(SignatureError::Mismatch),
                "{name}: tampered signature at {url}"
            );
        }
        let other_token = RequestValidator::new("another-token-another-token-1234");
        assert_eq!(
            validate(&other_token, vector, &vector.signed_url, &vector.signature),
            Err(SignatureError::Mismatch),
            "{name}: another account's token"
        );
        match &vector.kind {
            Kind::Form { params } if !params.is_empty() => {
                let mut changed = params.clone();
                changed[0].1.push('0');
                assert_eq!(
                    validator.validate_form(&vector.signed_url, &changed, &vector.signature),
                    Err(SignatureError::Mismatch),
                    "{name}: changed parameter"
                );
            }
            Kind::Json { tampered_body, .. } => assert_eq!(
                validator.validate_json(
                    &vector.signed_url,
                    tampered_body.as_bytes(),
                    &vector.signature
                ),
                Err(SignatureError::BodyHashMismatch),
                "{name}: tampered body"
            ),
            _ => {}
        }
    }
}
