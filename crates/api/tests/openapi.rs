//! `GET /api/openapi.json` describes what the API really answers: real responses over a real
//! socket (created, replayed, listed, detail, every kind of error) are validated against the
//! schema the document gives for that operation and status, with every object closed
//! (`additionalProperties: false`), so a field the code adds or renames without the document
//! fails here.

mod common;

use serde_json::{Value, json};
use voxbridge_api::Secret;

use common::{BEARER, Harness, INVALID_TO, start, status_params};

/// The document, as served (no bearer token needed).
async fn document(h: &Harness) -> Value {
    let response = h
        .http
        .get(format!("{}/api/openapi.json", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `schema` with every object that lists `properties` closed to others.
fn closed(mut schema: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".to_owned(), Value::Bool(false));
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// Checks `body` against the document's schema for `method path` answering `status`.
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method];
    assert!(
        operation.is_object(),
        "{method} {path} is not in the document"
    );
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} does not document {status}: {}",
        operation["responses"]
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} has no JSON schema"
    );
    let root = closed(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    }));
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the document:\n{}\nbody: {body:#}",
        errors.join("\n")
    );
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let url = format!("{}{path}", h.base);
    let mut request = match method {
        "post" => h.http.post(url),
        _ => h.http.get(url),
    }
    .bearer_auth(BEARER);
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one screening's story: created, replayed, refused, ended, read
async fn real_answers_match_the_openapi_document() {
    let h = start(|c| {
        c.webhooks.secret = Secret::new("whsec_openapi");
        c.messaging.whatsapp_from = "whatsapp:+14155550199".to_owned();
    })
    .await;
    let doc = document(&h).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/calls",
            "/api/calls/{callSid}",
            "/api/campaigns",
            "/api/campaigns/{id}",
            "/api/messages",
            "/api/messages/stats",
            "/api/messages/{id}",
            "/api/rate-limits/{number}",
            "/api/screenings",
            "/api/screenings/{id}",
            "/api/screenings/{id}/cancel",
            "/api/webhook-deliveries",
            "/api/webhook-deliveries/{id}",
            "/api/webhook-deliveries/{id}/redeliver",
        ]
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Created, with metadata and a callback, then replayed.
    let request = json!({
        "candidateId": "oa-1", "firstName": "Ada", "phone": "+14158675309", "jobTitle": "Welder",
        "callbackUrl": "https://ats.example.com/results", "metadata": {"requisition": "R-1"},
    });
    let (status, created) = send(
        &h,
        "post",
        "/api/screenings",
        Some(&request),
        Some("oa-key"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    check(&doc, "post", "/api/screenings", 201, &created);
    let (status, replayed) = send(
        &h,
        "post",
        "/api/screenings",
        Some(&request),
        Some("oa-key"),
    )
    .await;
    assert_eq!(status, 201);
    check(&doc, "post", "/api/screenings", 201, &replayed);
    let mut other = request.clone();
    other["jobTitle"] = json!("Painter");
    let (status, key_reused) =
        send(&h, "post", "/api/screenings", Some(&other), Some("oa-key")).await;
    assert_eq!(status, 422);
    check(&doc, "post", "/api/screenings", 422, &key_reused);
    // Field errors, and Twilio's refusal.
    let (status, invalid) = send(
        &h,
        "post",
        "/api/screenings",
        Some(&json!({"phone": "555"})),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(invalid["errors"].is_object());
    check(&doc, "post", "/api/screenings", 400, &invalid);
    let mut refused = request.clone();
    refused["phone"] = json!(INVALID_TO);
    refused["candidateId"] = json!("oa-2");
    let (status, twilio) = send(&h, "post", "/api/screenings", Some(&refused), None).await;
    assert_eq!(status, 400, "{twilio}");
    assert!(twilio["twilioError"].is_object());
    check(&doc, "post", "/api/screenings", 400, &twilio);

    // The call progresses and ends, so the records carry every kind of field.
    let id = created["id"].as_i64().unwrap();
    let sid = created["callSid"].as_str().unwrap().to_owned();
    for (call_status, seq) in [("ringing", "1"), ("in-progress", "2"), ("completed", "3")] {
        let mut params = status_params(&sid, call_status, seq);
        params.push(("CallDuration", "30"));
        assert_eq!(
            h.webhook("/twilio/voice/status", &params).await.status(),
            204
        );
    }
    h.state
        .store()
        .save_screening_result(
            &sid,
            &json!({"years": 3}),
            "qualified",
            Some("{\"fit\":true}"),
            common::T0 + 5,
        )
        .await
        .unwrap();

    for (path, doc_path) in [
        ("/api/screenings".to_owned(), "/api/screenings"),
        (
            "/api/screenings?state=completed&outcome=qualified&limit=5".to_owned(),
            "/api/screenings",
        ),
        (format!("/api/screenings/{id}"), "/api/screenings/{id}"),
        ("/api/calls".to_owned(), "/api/calls"),
        ("/api/calls?status=completed".to_owned(), "/api/calls"),
        (format!("/api/calls/{sid}"), "/api/calls/{callSid}"),
        (
            "/api/rate-limits/+14158675309".to_owned(),
            "/api/rate-limits/{number}",
        ),
        (
            "/api/webhook-deliveries".to_owned(),
            "/api/webhook-deliveries",
        ),
        (
            "/api/webhook-deliveries/1".to_owned(),
            "/api/webhook-deliveries/{id}",
        ),
    ] {
        let (status, body) = send(&h, "get", &path, None, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        check(&doc, "get", doc_path, 200, &body);
    }
    let (status, pending) = send(
        &h,
        "post",
        "/api/webhook-deliveries/1/redeliver",
        None,
        None,
    )
    .await;
    assert_eq!(status, 409, "{pending}");
    check(
        &doc,
        "post",
        "/api/webhook-deliveries/{id}/redeliver",
        409,
        &pending,
    );

    // 22:13 in London: scheduled for the candidate's calling hours, and canceled before its
    // call is placed; a placed one cannot be.
    let mut night = request.clone();
    night["phone"] = json!("+442071234567");
    night["candidateId"] = json!("oa-3");
    let (status, scheduled) = send(&h, "post", "/api/screenings", Some(&night), None).await;
    assert_eq!(status, 201, "{scheduled}");
    assert_eq!(scheduled["screening"]["state"], "scheduled");
    check(&doc, "post", "/api/screenings", 201, &scheduled);
    let path = format!("/api/screenings/{}/cancel", scheduled["id"]);
    let (status, canceled) = send(&h, "post", &path, None, None).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["screening"]["state"], "canceled");
    check(&doc, "post", "/api/screenings/{id}/cancel", 200, &canceled);
    let path = format!("/api/screenings/{id}/cancel");
    let (status, placed) = send(&h, "post", &path, None, None).await;
    assert_eq!(status, 409, "{placed}");
    check(&doc, "post", "/api/screenings/{id}/cancel", 409, &placed);
}

#[tokio::test]
async fn campaign_and_retry_answers_match_the_openapi_document() {
    let h = start(|c| {
        c.retries.max_attempts = 3;
        c.calling_hours.enabled = false;
    })
    .await;
    let doc = document(&h).await;
    // A missed call retried: the detail lists the attempt before.
    let (status, created) = send(
        &h,
        "post",
        "/api/screenings",
        Some(&json!({"candidateId": "oa-r", "firstName": "Ada", "phone": "+14158675309", "jobTitle": "Welder"})),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let sid = created["callSid"].as_str().unwrap().to_owned();
    let r = h
        .webhook("/twilio/voice/status", &status_params(&sid, "busy", "2"))
        .await;
    assert_eq!(r.status(), 204);
    let (status, detail) = send(&h, "get", &format!("/api/screenings/{id}"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        detail["attempts"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );
    check(&doc, "get", "/api/screenings/{id}", 200, &detail);

    let campaign = json!({"name": "OA", "jobTitle": "Welder", "candidates": [
        {"candidateId": "oa-c1", "firstName": "Bo", "phone": "+14158675310"},
        {"candidateId": "oa-r", "firstName": "Ada", "phone": "+14158675309"},
    ]});
    let (status, launched) = send(&h, "post", "/api/campaigns", Some(&campaign), None).await;
    assert_eq!(status, 201, "{launched}");
    assert_eq!(
        launched["skipped"],
        json!([{"candidateId": "oa-r", "reason": "under_way"}])
    );
    check(&doc, "post", "/api/campaigns", 201, &launched);
    let (status, again) = send(&h, "post", "/api/campaigns", Some(&campaign), None).await;
    assert_eq!(status, 409, "{again}");
    check(&doc, "post", "/api/campaigns", 409, &again);
    let bad = json!({"candidates": [{"candidateId": "x", "phone": "12"}]});
    let (status, refused) = send(&h, "post", "/api/campaigns", Some(&bad), None).await;
    assert_eq!(status, 400, "{refused}");
    check(&doc, "post", "/api/campaigns", 400, &refused);
    let (status, list) = send(&h, "get", "/api/campaigns?limit=5", None, None).await;
    assert_eq!(status, 200);
    check(&doc, "get", "/api/campaigns", 200, &list);
    let path = format!("/api/campaigns/{}", launched["campaign"]["id"]);
    let (status, one) = send(&h, "get", &path, None, None).await;
    assert_eq!(status, 200);
    check(&doc, "get", "/api/campaigns/{id}", 200, &one);
    for (path, expected) in [
        ("/api/campaigns/999", 404),
        ("/api/campaigns/x", 400),
        ("/api/campaigns?limit=0", 400),
    ] {
        let (status, body) = send(&h, "get", path, None, None).await;
        assert_eq!(status, expected, "{path}: {body}");
        let doc_path = if path.contains('?') {
            "/api/campaigns"
        } else {
            "/api/campaigns/{id}"
        };
        check(&doc, "get", doc_path, expected, &body);
    }
}

#[tokio::test]
async fn message_answers_match_the_openapi_document() {
    let h = start(|c| {
        c.messaging.whatsapp_from = "whatsapp:+14155550199".to_owned();
    })
    .await;
    let doc = document(&h).await;
    // Messages: queued (SMS, a WhatsApp template outside the session window), read back,
    // stats, and refused with Twilio's codes.
    for (request, expected) in [
        (
            json!({"to": "+14158675309", "body": "Your interview is at 3 pm"}),
            202,
        ),
        (
            json!({
                "to": "whatsapp:+14158675309",
                "contentSid": "HX0123456789abcdef0123456789abcdef",
                "contentVariables": {"1": "Ada", "2": "3 pm"},
                "sendAt": "2030-01-01T15:00:00.000Z",
            }),
            202,
        ),
        (json!({"to": "whatsapp:+14158675309", "body": "hello"}), 400),
        (json!({"to": "555", "body": "hello"}), 400),
        (json!({"to": "+14158675309"}), 400),
        (
            json!({"to": "+14158675309", "contentVariables": {"1": "Ada"}}),
            400,
        ),
    ] {
        let (status, body) = send(&h, "post", "/api/messages", Some(&request), None).await;
        assert_eq!(status, expected, "{request}: {body}");
        check(&doc, "post", "/api/messages", expected, &body);
    }
    for (path, doc_path, expected) in [
        ("/api/messages/1", "/api/messages/{id}", 200),
        ("/api/messages/2", "/api/messages/{id}", 200),
        ("/api/messages/stats", "/api/messages/stats", 200),
        ("/api/messages/99", "/api/messages/{id}", 404),
        ("/api/messages/x", "/api/messages/{id}", 400),
    ] {
        let (status, body) = send(&h, "get", path, None, None).await;
        assert_eq!(status, expected, "{path}: {body}");
        check(&doc, "get", doc_path, expected, &body);
    }
}

#[tokio::test]
async fn error_answers_match_the_openapi_document() {
    let h = start(|_| {}).await;
    let doc = document(&h).await;
    for (method, path, doc_path, expected) in [
        ("get", "/api/screenings?state=bogus", "/api/screenings", 400),
        ("get", "/api/screenings/0", "/api/screenings/{id}", 400),
        ("get", "/api/screenings/999", "/api/screenings/{id}", 404),
        (
            "post",
            "/api/screenings/999/cancel",
            "/api/screenings/{id}/cancel",
            404,
        ),
        (
            "post",
            "/api/screenings/x/cancel",
            "/api/screenings/{id}/cancel",
            400,
        ),
        ("get", "/api/calls?status=bogus", "/api/calls", 400),
        ("get", "/api/calls/nope", "/api/calls/{callSid}", 400),
        (
            "get",
            "/api/calls/CA0123456789abcdef0123456789abcdef",
            "/api/calls/{callSid}",
            404,
        ),
        (
            "get",
            "/api/rate-limits/555",
            "/api/rate-limits/{number}",
            400,
        ),
        (
            "get",
            "/api/webhook-deliveries?state=lost",
            "/api/webhook-deliveries",
            400,
        ),
        (
            "get",
            "/api/webhook-deliveries/77",
            "/api/webhook-deliveries/{id}",
            404,
        ),
        (
            "post",
            "/api/webhook-deliveries/77/redeliver",
            "/api/webhook-deliveries/{id}/redeliver",
            404,
        ),
    ] {
        let (status, body) = send(&h, method, path, None, None).await;
        assert_eq!(status, expected, "{path}: {body}");
        check(&doc, method, doc_path, expected, &body);
    }
    let response = h
        .http
        .get(format!("{}/api/screenings", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    check(&doc, "get", "/api/screenings", 401, &body);
}

/// The checker is not a rubber stamp: a renamed field, a missing one and a wrong type fail.
#[tokio::test]
async fn the_check_refuses_answers_the_document_does_not_describe() {
    let h = start(|_| {}).await;
    let doc = document(&h).await;
    let good = json!({"success": false, "error": "no screening 9"});
    check(&doc, "get", "/api/screenings/{id}", 404, &good);
    for bad in [
        json!({"success": false, "message": "no screening 9"}),
        json!({"success": false}),
        json!({"success": "no", "error": "x"}),
        json!({"success": false, "error": "x", "extra": 1}),
    ] {
        let outcome =
            std::panic::catch_unwind(|| check(&doc, "get", "/api/screenings/{id}", 404, &bad));
        assert!(outcome.is_err(), "accepted {bad}");
    }
}
