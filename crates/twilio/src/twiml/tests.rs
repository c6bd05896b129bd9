//! TwiML output parsed back with quick-xml: structure, attribute names and values, escaping.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::*;
use crate::e164::E164;

/// A parsed element.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn names(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }
}

fn node_from(start: &quick_xml::events::BytesStart<'_>) -> Node {
    Node {
        name: String::from_utf8(start.name().as_ref().to_vec()).unwrap(),
        attrs: start
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().expect("valid escapes").into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    }
}

/// Parses a whole document strictly; panics on anything malformed.
fn parse(xml: &str) -> Node {
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
        "missing declaration: {xml}"
    );
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(start) => stack.push(node_from(&start)),
            Event::Empty(start) => {
                let node = node_from(&start);
                stack.last_mut().unwrap().children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(node);
            }
            Event::Text(text) => {
                let text = text.unescape().expect("valid escapes");
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::Eof => break,
            Event::Decl(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut document = stack.pop().unwrap();
    assert!(stack.is_empty(), "unclosed elements");
    assert_eq!(document.children.len(), 1, "one root");
    let root = document.children.pop().unwrap();
    assert_eq!(root.name, "Response");
    root
}

#[test]
fn empty_response_is_a_declared_document() {
    let xml = Response::new().to_xml();
    assert_eq!(xml, r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#);
    assert!(parse(&xml).children.is_empty());
}

#[test]
fn say_play_pause_hangup_reject_render_in_order_with_attributes() {
    let xml = Response::new()
        .push(
            Say::new("Hello & welcome")
                .voice("Polly.Joanna")
                .language("en-US")
                .loop_count(2u32),
        )
        .push(Play::url("https://example.com/a.mp3?x=1&y=2").loop_count(3u32))
        .push(Play::digits("1w2#*").unwrap())
        .push(Pause::new().length(2u32))
        .push(Hangup)
        .push(Reject::new().reason(RejectReason::Busy))
        .to_xml();
    let root = parse(&xml);
    assert_eq!(
        root.names(),
        ["Say", "Play", "Play", "Pause", "Hangup", "Reject"]
    );
    let say = &root.children[0];
    assert_eq!(say.text, "Hello & welcome");
    assert_eq!(say.attr("voice"), Some("Polly.Joanna"));
    assert_eq!(say.attr("language"), Some("en-US"));
    assert_eq!(say.attr("loop"), Some("2"));
    assert_eq!(root.children[1].text, "https://example.com/a.mp3?x=1&y=2");
    assert_eq!(root.children[1].attr("loop"), Some("3"));
    assert_eq!(root.children[2].attr("digits"), Some("1w2#*"));
    assert_eq!(root.children[3].attr("length"), Some("2"));
    assert_eq!(root.children[5].attr("reason"), Some("busy"));
    assert!(matches!(
        Play::digits("12a"),
        Err(TwimlError::InvalidDigits(_))
    ));
}

#[test]
fn dial_with_numbers_and_recording_options() {
    let number = Number::new(E164::parse("+14158675309").unwrap())
        .send_digits("wwww1928")
        .status_callback("https://cb.example.com/n")
        .status_callback_events(["initiated", "answered"]);
    let xml = Response::new()
        .push(
            Dial::new()
                .number(number)
                .action("https://example.com/after-dial")
                .method(HttpMethod::Post)
                .timeout(20u32)
                .caller_id("+18005550100")
                .record(DialRecord::RecordFromAnswerDual)
                .time_limit(600u32)
                .answer_on_bridge(true)
                .hang_up_on_star(false)
                .recording_status_callback("https://example.com/rec")
                .recording_status_callback_events(&[
                    RecordingEvent::Completed,
                    RecordingEvent::Absent,
                ]),
        )
        .to_xml();
    let dial = &parse(&xml).children[0];
    assert_eq!(dial.attr("action"), Some("https://example.com/after-dial"));
    assert_eq!(dial.attr("method"), Some("POST"));
    assert_eq!(dial.attr("timeout"), Some("20"));
    assert_eq!(dial.attr("callerId"), Some("+18005550100"));
    assert_eq!(dial.attr("record"), Some("record-from-answer-dual"));
    assert_eq!(dial.attr("timeLimit"), Some("600"));
    assert_eq!(dial.attr("answerOnBridge"), Some("true"));
    assert_eq!(dial.attr("hangupOnStar"), Some("false"));
    assert_eq!(
        dial.attr("recordingStatusCallbackEvent"),
        Some("completed absent")
    );
    let number = &dial.children[0];
    assert_eq!(number.name, "Number");
    assert_eq!(number.text, "+14158675309");
    assert_eq!(number.attr("sendDigits"), Some("wwww1928"));
    assert_eq!(
        number.attr("statusCallbackEvent"),
        Some("initiated answered")
    );
}

#[test]
fn record_renders_documented_attribute_names() {
    let xml = Response::new()
        .push(
            Record::new()
                .action("https://example.com/recorded")
                .max_length(120u32)
                .play_beep(true)
                .timeout(3u32)
                .finish_on_key("#")
                .trim(RecordTrim::DoNotTrim)
                .recording_status_callback("https://example.com/rs")
                .recording_status_callback_method(HttpMethod::Get),
        )
        .to_xml();
    let record = &parse(&xml).children[0];
    for (name, value) in [
        ("action", "https://example.com/recorded"),
        ("maxLength", "120"),
        ("playBeep", "true"),
        ("timeout", "3"),
        ("finishOnKey", "#"),
        ("trim", "do-not-trim"),
        ("recordingStatusCallback", "https://example.com/rs"),
        ("recordingStatusCallbackMethod", "GET"),
    ] {
        assert_eq!(record.attr(name), Some(value), "{name}");
    }
}

#[test]
fn connect_stream_with_parameters_and_action() {
    let stream = Stream::new("wss://voice.example.com/media")
        .unwrap()
        .name("agent")
        .status_callback("https://example.com/stream-status")
        .status_callback_method(HttpMethod::Post)
        .parameter(Parameter::new("ScreeningId", "42").unwrap());
    let xml = Response::new()
        .push(
            Connect::stream(stream)
                .action("https://example.com/next")
                .method(HttpMethod::Post),
        )
        .push(Say::new("Goodbye"))
        .to_xml();
    let root = parse(&xml);
    assert_eq!(root.names(), ["Connect", "Say"]);
    let connect = &root.children[0];
    assert_eq!(connect.attr("action"), Some("https://example.com/next"));
    assert_eq!(connect.attr("method"), Some("POST"));
    let stream = &connect.children[0];
    assert_eq!(stream.name, "Stream");
    assert_eq!(stream.attr("url"), Some("wss://voice.example.com/media"));
    assert_eq!(stream.attr("name"), Some("agent"));
    assert_eq!(stream.attr("statusCallbackMethod"), Some("POST"));
    assert_eq!(stream.children[0].attr("name"), Some("ScreeningId"));
    assert_eq!(stream.children[0].attr("value"), Some("42"));
}

#[test]
fn start_and_stop_stream_with_track() {
    let xml = Response::new()
        .push(Start::stream(
            Stream::new("wss://x.example.com/fork")
                .unwrap()
                .name("fork")
                .track(StreamTrack::BothTracks),
        ))
        .push(StopStream::named("fork").unwrap())
        .to_xml();
    let root = parse(&xml);
    assert_eq!(root.names(), ["Start", "Stop"]);
    assert_eq!(
        root.children[0].children[0].attr("track"),
        Some("both_tracks")
    );
    assert_eq!(root.children[1].children[0].name, "Stream");
    assert_eq!(root.children[1].children[0].attr("name"), Some("fork"));
}

#[test]
fn stream_url_must_be_wss_without_query() {
    assert!(matches!(
        Stream::new("https://voice.example.com/media"),
        Err(TwimlError::StreamUrlNotWss(_))
    ));
    assert!(matches!(
        Stream::new("ws://x/y"),
        Err(TwimlError::StreamUrlNotWss(_))
    ));
    assert!(matches!(
        Stream::new("wss://"),
        Err(TwimlError::StreamUrlNotWss(_))
    ));
    assert_eq!(
        Stream::new("wss://voice.example.com/media?token=abc"),
        Err(TwimlError::StreamUrlHasQuery)
    );
    assert_eq!(
        Stream::new("wss://voice.example.com/media#x"),
        Err(TwimlError::StreamUrlHasQuery)
    );
    assert!(Stream::new("WSS://voice.example.com/media").is_ok());
}

#[test]
fn parameter_name_and_value_must_total_under_500_characters() {
    assert!(Parameter::new("n", "v".repeat(498)).is_ok());
    assert_eq!(
        Parameter::new("n", "v".repeat(499)),
        Err(TwimlError::ParameterTooLong(500))
    );
    // Characters, not bytes: 498 two-byte characters still fit.
    assert!(Parameter::new("n", "é".repeat(498)).is_ok());
    assert_eq!(Parameter::new("", "v"), Err(TwimlError::EmptyParameterName));
}

#[test]
fn hostile_strings_survive_escaping_in_text_and_attributes() {
    let hostile = "a&b<c>d\"e'f\tg\nh\ri]]>j<!--k--></Parameter><Hangup/>";
    let xml = Response::new()
        .push(Say::new(hostile))
        .push(Connect::stream(
            Stream::new("wss://x.example.com/m")
                .unwrap()
                .parameter(Parameter::new(hostile, hostile).unwrap()),
        ))
        .to_xml();
    let root = parse(&xml);
    assert_eq!(root.names(), ["Say", "Connect"], "no injected elements");
    assert_eq!(root.children[0].text, hostile);
    let parameter = &root.children[1].children[0].children[0];
    assert_eq!(parameter.attr("name"), Some(hostile));
    assert_eq!(parameter.attr("value"), Some(hostile));
    assert!(!xml.contains('\r'), "CR is written as a reference");
}

#[test]
fn control_characters_xml_cannot_carry_become_replacement_characters() {
    let xml = Response::new()
        .push(Say::new("a\u{0}b\u{1b}c\u{7f}d\u{ffff}"))
        .to_xml();
    assert!(!xml.contains('\u{0}') && !xml.contains('\u{1b}'));
    let root = parse(&xml);
    assert_eq!(root.children[0].text, "a\u{fffd}b\u{fffd}c\u{7f}d\u{fffd}");
}

#[test]
fn conversation_relay_writes_every_documented_attribute_in_camel_case() {
    let relay = ConversationRelay::new("wss://voice.example.com/relay")
        .unwrap()
        .welcome_greeting("Hi! I'm calling about the role.")
        .welcome_greeting_interruptible(InterruptMode::Speech)
        .language("en-US")
        .tts_language("en-GB")
        .tts_provider(TtsProvider::ElevenLabs)
        .voice("UgBBYS2sOqTuMpoF3BR0")
        .transcription_language("en-US")
        .transcription_provider(TranscriptionProvider::Deepgram)
        .speech_model("nova-3-general")
        .deepgram_smart_format(true)
        .interruptible(InterruptMode::Any)
        .interrupt_sensitivity(InterruptSensitivity::Medium)
        .dtmf_detection(true)
        .report_input_during_agent_speech(InterruptMode::None)
        .preemptible(false)
        .hints(["Rust", "Twilio, Inc"])
        .debug(&[DebugChannel::SpeakerEvents, DebugChannel::TokensPlayed])
        .elevenlabs_text_normalization(TextNormalization::On)
        .intelligence_service("GAxxxx")
        .partial_prompts(true)
        .profanity_filter(false)
        .background_noise_reduction(true)
        .speech_timeout(SpeechTimeout::Millis(900))
        .ignore_backchannel(true)
        .events("agent-speaking")
        .eot_threshold("0.7")
        .conversation_configuration("cfg-1")
        .language_option(
            RelayLanguage::new("sv-SE")
                .unwrap()
                .tts_provider(TtsProvider::Google)
                .voice("sv-SE-Standard-A")
                .transcription_provider(TranscriptionProvider::Google)
                .speech_model("telephony"),
        )
        .parameter(Parameter::new("callReference", "bar").unwrap());
    let xml = Response::new()
        .push(Connect::conversation_relay(relay).action("https://example.com/relay-done"))
        .to_xml();
    let connect = &parse(&xml).children[0];
    assert_eq!(
        connect.attr("action"),
        Some("https://example.com/relay-done")
    );
    let relay = &connect.children[0];
    assert_eq!(relay.name, "ConversationRelay");
    let expected = [
        ("url", "wss://voice.example.com/relay"),
        ("welcomeGreeting", "Hi! I'm calling about the role."),
        ("welcomeGreetingInterruptible", "speech"),
        ("language", "en-US"),
        ("ttsLanguage", "en-GB"),
        ("ttsProvider", "ElevenLabs"),
        ("voice", "UgBBYS2sOqTuMpoF3BR0"),
        ("transcriptionLanguage", "en-US"),
        ("transcriptionProvider", "Deepgram"),
        ("speechModel", "nova-3-general"),
        ("deepgramSmartFormat", "true"),
        ("interruptible", "any"),
        ("interruptSensitivity", "medium"),
        ("dtmfDetection", "true"),
        ("reportInputDuringAgentSpeech", "none"),
        ("preemptible", "false"),
        ("hints", "Rust,Twilio, Inc"),
        ("debug", "speaker-events tokens-played"),
        ("elevenlabsTextNormalization", "on"),
        ("intelligenceService", "GAxxxx"),
        ("partialPrompts", "true"),
        ("profanityFilter", "false"),
        ("backgroundNoiseReduction", "true"),
        ("speechTimeout", "900"),
        ("ignoreBackchannel", "true"),
        ("events", "agent-speaking"),
        ("eotThreshold", "0.7"),
        ("conversationConfiguration", "cfg-1"),
    ];
    assert_eq!(relay.attrs.len(), expected.len(), "{:?}", relay.attrs);
    for (name, value) in expected {
        assert_eq!(relay.attr(name), Some(value), "{name}");
    }
    assert_eq!(relay.names(), ["Language", "Parameter"]);
    let language = &relay.children[0];
    assert_eq!(language.attr("code"), Some("sv-SE"));
    assert_eq!(language.attr("ttsProvider"), Some("Google"));
    assert_eq!(language.attr("voice"), Some("sv-SE-Standard-A"));
    assert_eq!(language.attr("transcriptionProvider"), Some("Google"));
    assert_eq!(language.attr("speechModel"), Some("telephony"));
    assert_eq!(relay.children[1].attr("name"), Some("callReference"));
}

#[test]
fn conversation_relay_requires_wss_url_and_speech_timeout_auto_renders() {
    assert!(matches!(
        ConversationRelay::new("https://voice.example.com/relay"),
        Err(TwimlError::RelayUrlNotWss(_))
    ));
    let xml = Response::new()
        .push(Connect::conversation_relay(
            ConversationRelay::new("wss://v.example.com/r?session=1")
                .unwrap()
                .speech_timeout(SpeechTimeout::Auto),
        ))
        .to_xml();
    let relay = &parse(&xml).children[0].children[0];
    assert_eq!(relay.attr("speechTimeout"), Some("auto"));
    assert_eq!(relay.attr("url"), Some("wss://v.example.com/r?session=1"));
    assert!(RelayLanguage::new("").is_err());
}

#[test]
fn redirect_renders_url_text() {
    let xml = Response::new()
        .push(Redirect::new("https://example.com/next?a=1&b=2").method(HttpMethod::Get))
        .to_xml();
    let redirect = &parse(&xml).children[0];
    assert_eq!(redirect.text, "https://example.com/next?a=1&b=2");
    assert_eq!(redirect.attr("method"), Some("GET"));
}
