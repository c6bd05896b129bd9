//! Property tests: every parser survives arbitrary input without panicking, and both
//! WebSocket protocols round-trip (encode then decode gives the same message).

use std::collections::BTreeMap;

use proptest::prelude::*;
use voxbridge_twilio::media::{
    self, Connected, DtmfDigit, InboundDecoder, InboundEvent, InboundMessage, OutboundDecoder,
    OutboundEncoder, OutboundMessage, OwnedMediaFrame, Track,
};
use voxbridge_twilio::relay;
use voxbridge_twilio::sid::{AccountSid, CallSid, SessionSid, StreamSid};
use voxbridge_twilio::signature::RequestValidator;
use voxbridge_twilio::twiml::{Connect, Parameter, Response, Say, Stream};
use voxbridge_twilio::webhook::{
    AmdCallback, CallStatusCallback, FormParams, IncomingSms, RecordingStatusCallback,
    RelaySessionCallback, Rfc2822Timestamp, SmsKeyword,
};
use voxbridge_twilio::{Address, E164};

fn sid_body() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,32}"
}

fn stream_sid() -> impl Strategy<Value = StreamSid> {
    sid_body().prop_map(|b| StreamSid::new(format!("MZ{b}")).unwrap())
}

fn account_sid() -> impl Strategy<Value = AccountSid> {
    sid_body().prop_map(|b| AccountSid::new(format!("AC{b}")).unwrap())
}

fn call_sid() -> impl Strategy<Value = CallSid> {
    sid_body().prop_map(|b| CallSid::new(format!("CA{b}")).unwrap())
}

fn track() -> impl Strategy<Value = Track> {
    prop_oneof![Just(Track::Inbound), Just(Track::Outbound)]
}

fn digit() -> impl Strategy<Value = DtmfDigit> {
    "[0-9*#A-D]".prop_map(|d| DtmfDigit::parse(&d).unwrap())
}

fn params_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4)
}

fn inbound_message() -> impl Strategy<Value = InboundMessage> {
    prop_oneof![
        (any::<String>(), any::<String>()).prop_map(|(protocol, version)| {
            InboundMessage::Connected(Connected { protocol, version })
        }),
        (
            any::<u64>(),
            stream_sid(),
            account_sid(),
            call_sid(),
            proptest::collection::vec(track(), 0..3),
            params_map()
        )
            .prop_map(
                |(
                    sequence_number,
                    stream_sid,
                    account_sid,
                    call_sid,
                    tracks,
                    custom_parameters,
                )| {
                    InboundMessage::Start(media::Start {
                        sequence_number,
                        stream_sid,
                        account_sid,
                        call_sid,
                        tracks,
                        custom_parameters,
                    })
                }
            ),
        (
            any::<u64>(),
            stream_sid(),
            track(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..400)
        )
            .prop_map(
                |(sequence_number, stream_sid, track, chunk, timestamp_ms, payload)| {
                    InboundMessage::Media(OwnedMediaFrame {
                        sequence_number,
                        stream_sid,
                        track,
                        chunk,
                        timestamp_ms,
                        payload,
                    })
                }
            ),
        (any::<u64>(), stream_sid(), digit()).prop_map(|(sequence_number, stream_sid, digit)| {
            InboundMessage::Dtmf(media::Dtmf {
                sequence_number,
                stream_sid,
                digit,
            })
        }),
        (any::<u64>(), stream_sid(), any::<String>()).prop_map(
            |(sequence_number, stream_sid, name)| InboundMessage::Mark(media::Mark {
                sequence_number,
                stream_sid,
                name
            })
        ),
        (any::<u64>(), stream_sid(), account_sid(), call_sid()).prop_map(
            |(sequence_number, stream_sid, account_sid, call_sid)| InboundMessage::Stop(
                media::Stop {
                    sequence_number,
                    stream_sid,
                    account_sid,
                    call_sid
                }
            )
        ),
    ]
}

fn outbound_message() -> impl Strategy<Value = OutboundMessage> {
    prop_oneof![
        (stream_sid(), proptest::collection::vec(any::<u8>(), 0..400)).prop_map(
            |(stream_sid, payload)| OutboundMessage::Media {
                stream_sid,
                payload
            }
        ),
        (stream_sid(), any::<String>())
            .prop_map(|(stream_sid, name)| OutboundMessage::Mark { stream_sid, name }),
        stream_sid().prop_map(|stream_sid| OutboundMessage::Clear { stream_sid }),
    ]
}

/// Strings, numbers, nulls, arrays and objects with media-ish keys.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        prop_oneof![
            Just("media"),
            Just("start"),
            Just("stop"),
            Just("mark"),
            Just("dtmf"),
            Just("connected"),
            Just("clear"),
            Just("setup"),
            Just("prompt"),
            Just("interrupt"),
            Just("text"),
            Just("play"),
            Just("sendDigits"),
            Just("language"),
            Just("end"),
            Just("info"),
            Just("error"),
            Just("MZ1"),
            Just("AAAA"),
            Just("7"),
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            Just("event".to_owned()),
            Just("type".to_owned()),
            Just("streamSid".to_owned()),
            Just("sequenceNumber".to_owned()),
            Just("media".to_owned()),
            Just("payload".to_owned()),
            Just("track".to_owned()),
            Just("chunk".to_owned()),
            Just("timestamp".to_owned()),
            Just("start".to_owned()),
            Just("mediaFormat".to_owned()),
            Just("mark".to_owned()),
            Just("name".to_owned()),
            Just("digits".to_owned()),
            Just("loop".to_owned()),
            Just("source".to_owned()),
            Just("token".to_owned()),
            Just("voicePrompt".to_owned()),
            any::<String>(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn media_decoders_never_panic_on_arbitrary_text(text in any::<String>()) {
        let _ = InboundDecoder::new().decode(&text);
        let _ = OutboundDecoder::new().decode(&text);
    }

    #[test]
    fn media_decoders_never_panic_on_json_shaped_input(value in json_value()) {
        let text = value.to_string();
        let _ = InboundDecoder::new().decode(&text);
        let _ = OutboundDecoder::new().decode(&text);
        let _ = relay::InboundMessage::parse(&text);
        let _ = relay::OutboundMessage::parse(&text);
    }

    #[test]
    fn media_inbound_messages_round_trip(message in inbound_message()) {
        let json = message.to_json();
        prop_assert_eq!(InboundMessage::from_json(&json).unwrap(), message);
    }

    #[test]
    fn media_outbound_messages_round_trip(message in outbound_message()) {
        let json = message.to_json();
        prop_assert_eq!(OutboundMessage::from_json(&json).unwrap(), message.clone());
        // The zero-allocation encoder writes the same message.
        let mut encoder = match &message {
            OutboundMessage::Media { stream_sid, .. }
            | OutboundMessage::Mark { stream_sid, .. }
            | OutboundMessage::Clear { stream_sid } => OutboundEncoder::new(stream_sid.clone()),
        };
        let fast = match &message {
            OutboundMessage::Media { payload, .. } => encoder.media(payload).to_owned(),
            OutboundMessage::Mark { name, .. } => encoder.mark(name).to_owned(),
            OutboundMessage::Clear { .. } => encoder.clear().to_owned(),
        };
        prop_assert_eq!(OutboundMessage::from_json(&fast).unwrap(), message);
    }

    #[test]
    fn media_counters_decode_from_strings_or_numbers(
        seq in any::<u64>(), chunk in any::<u64>(), ts in any::<u64>(), as_numbers in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 1..200),
    ) {
        use base64::Engine as _;
        let counter = |n: u64| if as_numbers { serde_json::json!(n) } else { serde_json::json!(n.to_string()) };
        let text = serde_json::json!({
            "event": "media", "sequenceNumber": counter(seq), "streamSid": "MZ1",
            "media": {"track": "inbound", "chunk": counter(chunk), "timestamp": counter(ts),
                      "payload": base64::engine::general_purpose::STANDARD.encode(&payload)}
        }).to_string();
        let mut decoder = InboundDecoder::new();
        let InboundEvent::Media(frame) = decoder.decode(&text).unwrap() else {
            return Err(TestCaseError::fail("expected media"));
        };
        prop_assert_eq!((frame.sequence_number, frame.chunk, frame.timestamp_ms), (seq, chunk, ts));
        prop_assert_eq!(frame.payload, &payload[..]);
    }

    #[test]
    fn relay_parsers_never_panic_on_arbitrary_text(text in any::<String>()) {
        let _ = relay::InboundMessage::parse(&text);
        let _ = relay::OutboundMessage::parse(&text);
        let _ = relay::HandoffData::parse(&text);
    }

    #[test]
    fn relay_inbound_messages_round_trip(
        voice_prompt in any::<String>(), lang in proptest::option::of("[a-z]{2}(-[A-Z]{2})?"), last in any::<bool>(),
        utterance in any::<String>(), ms in proptest::option::of(any::<u64>()), description in any::<String>(),
        name in any::<String>(), value in proptest::option::of(any::<String>()), ts in proptest::option::of(any::<u64>()),
        session in sid_body(), from in any::<String>(), custom in params_map(), digit in digit(),
    ) {
        let messages = [
            relay::InboundMessage::Prompt(relay::Prompt { voice_prompt, lang, last }),
            relay::InboundMessage::Interrupt(relay::Interrupt { utterance_until_interrupt: utterance, duration_until_interrupt_ms: ms }),
            relay::InboundMessage::Error(relay::ErrorReport { description }),
            relay::InboundMessage::Info(relay::Info { name, value: value.map(serde_json::Value::from), ts }),
            relay::InboundMessage::Dtmf(relay::Dtmf { digit }),
            relay::InboundMessage::Setup(Box::new(relay::Setup {
                session_id: SessionSid::new(format!("VX{session}")).unwrap(),
                account_sid: AccountSid::new("AC1").unwrap(),
                parent_call_sid: None,
                call_sid: CallSid::new("CA1").unwrap(),
                from: Address::parse(&from),
                to: Address::parse("+18005550101"),
                forwarded_from: None,
                call_type: Some("PSTN".into()),
                caller_name: None,
                direction: None,
                call_status: Some(voxbridge_twilio::call::CallStatus::Ringing),
                custom_parameters: custom,
            })),
        ];
        for message in messages {
            prop_assert_eq!(relay::InboundMessage::parse(&message.to_json()).unwrap(), message);
        }
    }

    #[test]
    fn relay_outbound_messages_round_trip(
        token in any::<String>(), last in any::<bool>(), interruptible in proptest::option::of(any::<bool>()),
        source in "https://[a-z]{1,10}\\.example/[a-z0-9]{1,10}\\.mp3", loops in 0u64..=1000,
        digits in "[0-9w#*]{1,20}", tts in proptest::option::of("[a-z]{2}-[A-Z]{2}"),
        code in any::<String>(), reason in any::<String>(),
    ) {
        let language = relay::Language::new(tts.clone(), if tts.is_none() { Some("en-US".into()) } else { None }).unwrap();
        let messages = [
            relay::OutboundMessage::Text(relay::Text { interruptible, ..if last { relay::Text::last(token) } else { relay::Text::partial(token) } }),
            relay::OutboundMessage::Play(relay::Play { loop_count: relay::PlayLoop::new(loops).unwrap(), ..relay::Play::new(relay::PlaySource::new(source).unwrap()) }),
            relay::OutboundMessage::SendDigits(relay::DigitSequence::new(digits).unwrap()),
            relay::OutboundMessage::Language(language),
            relay::OutboundMessage::End(relay::End::with_handoff(&relay::HandoffData::new(code, reason))),
        ];
        for message in messages {
            prop_assert_eq!(relay::OutboundMessage::parse(&message.to_json().unwrap()).unwrap(), message);
        }
    }

    #[test]
    fn form_and_webhook_parsers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let params = FormParams::parse(&body);
        let _ = CallStatusCallback::from_params(params.clone());
        let _ = AmdCallback::from_params(params.clone());
        let _ = RecordingStatusCallback::from_params(params.clone());
        let _ = RelaySessionCallback::from_params(params.clone());
        let _ = IncomingSms::from_params(params.clone());
        let _ = format!("{params:?}");
    }

    #[test]
    fn webhook_parsers_never_panic_on_plausible_fields(
        values in proptest::collection::vec(any::<String>(), 12),
    ) {
        let names = ["CallSid", "AccountSid", "From", "To", "CallStatus", "Timestamp", "SequenceNumber",
                     "AnsweredBy", "RecordingStatus", "SessionId", "SessionStatus", "NumMedia"];
        let params = FormParams::from_pairs(names.iter().zip(values).map(|(k, v)| ((*k).to_owned(), v)).collect());
        let _ = CallStatusCallback::from_params(params.clone());
        let _ = AmdCallback::from_params(params.clone());
        let _ = RecordingStatusCallback::from_params(params.clone());
        let _ = RelaySessionCallback::from_params(params.clone());
        let _ = IncomingSms::from_params(params);
    }

    #[test]
    fn form_params_round_trip_through_a_body(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..6)) {
        let params = FormParams::from_pairs(pairs);
        prop_assert_eq!(FormParams::parse(params.to_body().as_bytes()), params);
    }

    #[test]
    fn e164_never_panics_and_normalizes_idempotently(text in any::<String>()) {
        if let Ok(number) = E164::parse(&text) {
            prop_assert_eq!(E164::parse(number.as_str()).unwrap(), number.clone());
            let digits = number.as_str().len() - 1;
            prop_assert!((7..=15).contains(&digits));
            let shown = number.masked().chars().filter(char::is_ascii_digit).count();
            prop_assert!(digits - shown >= 3);
        }
        let _ = SmsKeyword::classify(&text);
        let _ = Rfc2822Timestamp::parse(&text);
    }

    #[test]
    fn e164_accepts_formatted_valid_numbers(cc in 1u8..=9, rest in "[0-9]{6,14}") {
        let formatted = format!("+{cc} ({}) {}", &rest[..3], &rest[3..]);
        prop_assert_eq!(E164::parse(&formatted).unwrap().to_string(), format!("+{cc}{rest}"));
    }

    #[test]
    fn signature_validation_never_panics(url in any::<String>(), sig in any::<String>(),
                                         params in proptest::collection::vec((any::<String>(), any::<String>()), 0..4),
                                         body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let validator = RequestValidator::new("token");
        let _ = validator.sign(&url, &params);
        let _ = validator.validate_form(&url, &params, &sig);
        let _ = validator.validate_json(&url, &body, &sig);
        let _ = validator.validate_websocket(&url, &sig);
    }

    #[test]
    fn signed_requests_validate_and_tampering_fails(
        host in "[a-z]{1,12}\\.example\\.com", port in proptest::option::of(1u16..), path in "(/[a-zA-Z0-9._~-]{0,8}){0,3}",
        params in proptest::collection::vec(("[A-Za-z]{1,8}", any::<String>()), 0..5),
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let url = format!("https://{host}{port}{path}");
        let validator = RequestValidator::new("s3cr3t");
        let signature = validator.sign(&url, &params);
        prop_assert_eq!(validator.validate_form(&url, &params, &signature), Ok(()));
        let mut tampered = params.clone();
        tampered.push(("Injected".into(), "1".into()));
        prop_assert!(validator.validate_form(&url, &tampered, &signature).is_err());
        let ws = validator.sign_websocket(&url);
        prop_assert_eq!(validator.validate_websocket(&url, &ws), Ok(()));
    }

    #[test]
    fn timestamps_round_trip(secs in -62_135_596_800i64..253_402_300_799) {
        let t = Rfc2822Timestamp::from_unix_seconds(secs);
        prop_assert_eq!(Rfc2822Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn twiml_escapes_arbitrary_text_and_parameters(text in any::<String>(), name in "\\PC{1,20}", value in "\\PC{0,100}") {
        let xml = Response::new()
            .push(Say::new(text))
            .push(Connect::stream(Stream::new("wss://x.example.com/m").unwrap().parameter(Parameter::new(name.clone(), value.clone()).unwrap())))
            .to_xml();
        let mut reader = quick_xml::Reader::from_str(&xml);
        reader.config_mut().check_end_names = true;
        let mut found = None;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Empty(e)) if e.name().as_ref() == b"Parameter" => {
                    let attrs: Vec<String> = e.attributes().map(|a| a.unwrap().unescape_value().unwrap().into_owned()).collect();
                    found = Some(attrs);
                }
                Ok(_) => {}
                Err(err) => return Err(TestCaseError::fail(format!("{err} in {xml}"))),
            }
        }
        prop_assert_eq!(found, Some(vec![name, value]));
    }
}
