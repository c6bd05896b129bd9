//! Every vector from `shared/reference/signature-vectors.py` and section 3.4 of
//! `twilio-protocols.md` (twilio-python `tests/unit/test_request_validator.py`, twilio-node
//! `spec/validation.spec.js`, and the example on <https://www.twilio.com/docs/usage/security>).

use super::*;

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
const EMPTY_BODY_HASH: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The SDK test parameters.
fn sdk_params() -> Vec<(String, String)> {
    pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ])
}

fn validator() -> RequestValidator {
    RequestValidator::new(TOKEN)
}

#[test]
fn doc_example_signature() {
    let params = pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675310"),
        ("Digits", "1234"),
        ("From", "+14158675310"),
        ("To", "+18005551212"),
    ]);
    let url = "https://example.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().sign(url, &params),
        "L/OH5YylLD5NRKLltdqwSvS0BnU="
    );
    assert_eq!(
        validator().validate_form(url, &params, "L/OH5YylLD5NRKLltdqwSvS0BnU="),
        Ok(())
    );
}

#[test]
fn sdk_base_vector_signs_and_validates() {
    assert_eq!(
        validator().sign(URL, &sdk_params()),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
    assert_eq!(
        validator().validate_form(URL, &sdk_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Ok(())
    );
}

#[test]
fn https_custom_port_validates_because_port_is_stripped() {
    let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().validate_form(url, &sdk_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Ok(())
    );
}

#[test]
fn http_custom_port_vector() {
    let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().sign(url, &sdk_params()),
        "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    );
    assert_eq!(
        validator().validate_form(url, &sdk_params(), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        Ok(())
    );
}

#[test]
fn https_default_port_added_vector() {
    let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().sign(with_port, &sdk_params()),
        "kvajT1Ptam85bY51eRf/AJRuM3w="
    );
    // Twilio signed the :443 form; the server sees the URL without a port.
    assert_eq!(
        validator().validate_form(URL, &sdk_params(), "kvajT1Ptam85bY51eRf/AJRuM3w="),
        Ok(())
    );
    // And the reverse: the server sees :443, Twilio signed without it.
    assert_eq!(
        validator().validate_form(with_port, &sdk_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Ok(())
    );
}

#[test]
fn http_default_port_added_vector() {
    let with_port = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().sign(with_port, &sdk_params()),
        "0ZXoZLH/DfblKGATFgpif+LLRf4="
    );
    assert_eq!(
        validator().validate_form(
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            &sdk_params(),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        ),
        Ok(())
    );
}

#[test]
fn repeated_keys_are_deduplicated_and_sorted() {
    let params = pairs(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    assert_eq!(
        validator().sign(URL, &params),
        "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    );
    assert_eq!(
        validator().validate_form(URL, &params, "IK+Dwps556ElfBT0I3Rgjkr1wJU="),
        Ok(())
    );
}

#[test]
fn array_param_value_order_does_not_matter() {
    let forward = pairs(&[
        ("MessagingBinding.Address", "+1325xxxxxxx"),
        ("MessagingBinding.Address", "+1415xxxxxxx"),
    ]);
    let reverse = pairs(&[
        ("MessagingBinding.Address", "+1415xxxxxxx"),
        ("MessagingBinding.Address", "+1325xxxxxxx"),
    ]);
    assert_eq!(
        validator().sign(URL, &forward),
        "83O6e2vORAoJHUNzJjDWN1jz+BA="
    );
    assert_eq!(
        validator().sign(URL, &reverse),
        "83O6e2vORAoJHUNzJjDWN1jz+BA="
    );
}

#[test]
fn body_hash_vectors() {
    assert_eq!(body_sha256_hex(BODY), BODY_HASH);
    assert_eq!(body_sha256_hex(b"{}"), EMPTY_BODY_HASH);
    assert_eq!(
        json_webhook_url(URL, BODY),
        format!("{URL}&bodySHA256={BODY_HASH}")
    );
}

#[test]
fn json_body_vector_validates_signature_then_body_hash() {
    let url = format!("{URL}&bodySHA256={BODY_HASH}");
    assert_eq!(validator().sign(&url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    assert_eq!(
        validator().validate_json(&url, BODY, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Ok(())
    );
    assert_eq!(
        validator().validate_json(
            &url,
            b"{\"property\": \"other\"}",
            "a9nBmqA0ju/hNViExpshrM61xv4="
        ),
        Err(SignatureError::BodyHashMismatch)
    );
    assert_eq!(
        validator().validate_json(&url, BODY, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn json_body_hash_only_query_vector() {
    let url = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");
    assert_eq!(validator().sign(&url, &[]), "y77kIzt2vzLz71DgmJGsen2scGs=");
    assert_eq!(
        validator().validate_json(&url, BODY, "y77kIzt2vzLz71DgmJGsen2scGs="),
        Ok(())
    );
}

#[test]
fn empty_json_body_vector_matches_only_the_443_form() {
    let url = format!("{URL}&bodySHA256={EMPTY_BODY_HASH}");
    let with_port =
        format!("https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={EMPTY_BODY_HASH}");
    assert_ne!(validator().sign(&url, &[]), "Ldidvp12m26NI7eqEvxnEpkd9Hc=");
    assert_eq!(
        validator().sign(&with_port, &[]),
        "Ldidvp12m26NI7eqEvxnEpkd9Hc="
    );
    assert_eq!(
        validator().validate_json(&url, b"{}", "Ldidvp12m26NI7eqEvxnEpkd9Hc="),
        Ok(())
    );
}

#[test]
fn json_url_without_body_hash_is_a_typed_error() {
    assert_eq!(
        validator().validate_json(URL, BODY, "a9nBmqA0ju/hNViExpshrM61xv4="),
        Err(SignatureError::MissingBodyHash)
    );
}

#[test]
fn apostrophe_matches_when_encoded_as_percent_27() {
    let raw = format!("{URL}&Body=It's+amazing");
    let encoded = format!("{URL}&Body=It%27s+amazing");
    assert_eq!(
        validator().sign(&raw, &sdk_params()),
        "dsq4Ehbj6cs+KdTkpF5sSSplOWw="
    );
    assert_eq!(
        validator().sign(&encoded, &sdk_params()),
        "TfZzewPq8wqrGlMfyAud8+/IvJ0="
    );
    assert_eq!(
        validator().sign(&format!("{URL}&Body=It%27s%20amazing"), &sdk_params()),
        "KjO9y3ocKRL4bG0cJcdngFA5jZ0="
    );
    // twilio-node signs the WHATWG form of the URL it was given.
    assert_eq!(
        validator().validate_form(&raw, &sdk_params(), "TfZzewPq8wqrGlMfyAud8+/IvJ0="),
        Ok(())
    );
    assert_eq!(
        validator().validate_form(&encoded, &sdk_params(), "TfZzewPq8wqrGlMfyAud8+/IvJ0="),
        Ok(())
    );
}

#[test]
fn credential_url_vectors() {
    let creds = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";
    let creds_443 = "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2";
    let user_only = "https://user@mycompany.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        validator().sign(creds, &sdk_params()),
        "CukzLTc1tT5dXEDIHm/tKBanW10="
    );
    assert_eq!(
        validator().sign(creds_443, &sdk_params()),
        "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="
    );
    assert_eq!(
        validator().sign(user_only, &sdk_params()),
        "2YRLlVAflCqxaNicjMpJcSTgzSs="
    );
    for (url, signature) in [
        (creds, "CukzLTc1tT5dXEDIHm/tKBanW10="),
        (creds, "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI="),
        (user_only, "2YRLlVAflCqxaNicjMpJcSTgzSs="),
        // Twilio itself drops user:pass before signing.
        (creds, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ] {
        assert_eq!(
            validator().validate_form(url, &sdk_params(), signature),
            Ok(()),
            "{url} with {signature}"
        );
    }
}

#[test]
fn wrong_token_param_or_signature_is_a_mismatch() {
    let other = RequestValidator::new("54321");
    assert_eq!(
        other.validate_form(URL, &sdk_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Err(SignatureError::Mismatch)
    );
    let mut params = sdk_params();
    params[1].1 = "9999".into();
    assert_eq!(
        validator().validate_form(URL, &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Err(SignatureError::Mismatch)
    );
    // Names are case-sensitive.
    let mut params = sdk_params();
    params[0].0 = "callsid".into();
    assert_eq!(
        validator().validate_form(URL, &params, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        validator().validate_form(URL, &sdk_params(), "RSOYDt4T1cUTdK1PDd93/VVr8B8"),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn missing_signature_and_bad_url_are_typed_errors() {
    assert_eq!(
        validator().validate_form(URL, &sdk_params(), "  "),
        Err(SignatureError::Missing)
    );
    assert!(matches!(
        validator().validate_form("mycompany.com/x", &[], "abc="),
        Err(SignatureError::BadUrl(_))
    ));
    assert!(matches!(
        validator().validate_form("ftp://mycompany.com/x", &[], "abc="),
        Err(SignatureError::BadUrl(_))
    ));
    assert!(matches!(
        validator().validate_form("https://host:port/x", &[], "abc="),
        Err(SignatureError::BadUrl(_))
    ));
}

#[test]
fn websocket_upgrade_is_signed_over_wss_and_tolerates_trailing_slash() {
    let signature = validator().sign("wss://voice.example.com/relay", &[]);
    assert_eq!(
        validator().sign_websocket("https://voice.example.com/relay"),
        signature
    );
    for seen in [
        "wss://voice.example.com/relay",
        "https://voice.example.com/relay",
        "https://voice.example.com/relay/",
        "wss://voice.example.com:443/relay/",
    ] {
        assert_eq!(
            validator().validate_websocket(seen, &signature),
            Ok(()),
            "{seen}"
        );
    }
    let with_slash = validator().sign("wss://voice.example.com/media/", &[]);
    assert_eq!(
        validator().validate_websocket("https://voice.example.com/media", &with_slash),
        Ok(())
    );
    // Signed over https:// is not what Twilio sends for a WebSocket.
    let https_signature = validator().sign("https://voice.example.com/relay", &[]);
    assert_eq!(
        validator().validate_websocket("https://voice.example.com/relay", &https_signature),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn debug_redacts_the_token() {
    let shown = format!("{:?}", RequestValidator::new("super-secret-token"));
    assert!(!shown.contains("super-secret-token"));
    assert!(shown.contains("redacted"));
}

#[test]
fn ipv6_hosts_keep_their_brackets() {
    let url = "https://[::1]:8443/hook";
    let signature = validator().sign("https://[::1]/hook", &[]);
    assert_eq!(validator().validate_form(url, &[], &signature), Ok(()));
}
