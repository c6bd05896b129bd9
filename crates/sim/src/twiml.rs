//! Reads the TwiML our answer URL returns, as Twilio would: the verbs the simulator acts on
//! (`<Connect><Stream>`, `<Connect><ConversationRelay>` with their `<Parameter>`s, `<Say>`,
//! `<Pause>`, `<Hangup>`) and the names of the others
//! (<https://www.twilio.com/docs/voice/twiml>).

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Why a TwiML document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TwimlError {
    /// Not well-formed XML.
    #[error("TwiML is not well-formed XML: {0}")]
    Xml(String),
    /// The root element is not `<Response>`.
    #[error("TwiML root must be <Response>")]
    NoResponse,
    /// A required attribute is absent.
    #[error("<{element}> needs a {attribute} attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// `<Connect>` holds neither `<Stream>` nor `<ConversationRelay>`.
    #[error("<Connect> holds no <Stream> or <ConversationRelay>")]
    EmptyConnect,
}

/// What `<Connect>` connects the call to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// `<Stream url>`: a bidirectional Media Streams socket.
    Stream {
        /// `url` (`wss://`).
        url: String,
        /// `<Parameter>`s, delivered in `start.customParameters`.
        parameters: BTreeMap<String, String>,
    },
    /// `<ConversationRelay url ...>`.
    Relay {
        /// `url` (`wss://`).
        url: String,
        /// Every attribute other than `url` (`welcomeGreeting`, `dtmfDetection`, ...).
        attributes: BTreeMap<String, String>,
        /// `<Parameter>`s, delivered in `setup.customParameters`.
        parameters: BTreeMap<String, String>,
    },
}

/// One verb the simulator understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Connect action? method?>`.
    Connect {
        /// `action`: where Twilio posts when the connection ends.
        action: Option<String>,
        /// The target.
        target: ConnectTarget,
    },
    /// `<Say>` with its text.
    Say(String),
    /// `<Pause length>` in seconds (default 1).
    Pause(u32),
    /// `<Hangup/>`.
    Hangup,
    /// Any other verb, by name (the simulator skips it).
    Other(String),
}

fn attributes(start: &BytesStart<'_>) -> Result<BTreeMap<String, String>, TwimlError> {
    let mut out = BTreeMap::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| TwimlError::Xml(e.to_string()))?;
        let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute
            .unescape_value()
            .map_err(|e| TwimlError::Xml(e.to_string()))?
            .into_owned();
        out.insert(key, value);
    }
    Ok(out)
}

/// Parses a `<Response>` document into its verbs, in order.
#[allow(clippy::too_many_lines)] // one streaming pass over the elements
pub fn parse(xml: &str) -> Result<Vec<Verb>, TwimlError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut verbs = Vec::new();
    // Element path below <Response>.
    let mut stack: Vec<String> = Vec::new();
    let mut seen_response = false;
    let mut connect: Option<(Option<String>, Option<ConnectTarget>)> = None;
    let mut say_text: Option<String> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| TwimlError::Xml(e.to_string()))?;
        let (start, is_empty) = match &event {
            Event::Start(s) => (Some(s.clone()), false),
            Event::Empty(s) => (Some(s.clone()), true),
            _ => (None, false),
        };
        if let Some(start) = start {
            let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
            let attrs = attributes(&start)?;
            match (stack.len(), name.as_str()) {
                (0, "Response") => seen_response = true,
                (0, _) => return Err(TwimlError::NoResponse),
                (1, "Connect") => {
                    connect = Some((attrs.get("action").cloned(), None));
                }
                (1, "Say") => say_text = Some(String::new()),
                (1, "Pause") => verbs.push(Verb::Pause(
                    attrs
                        .get("length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(1),
                )),
                (1, "Hangup") => verbs.push(Verb::Hangup),
                (1, other) => verbs.push(Verb::Other(other.to_owned())),
                (2, "Stream" | "ConversationRelay") if connect.is_some() => {
                    let mut attrs = attrs;
                    let element = if name == "Stream" {
                        "Stream"
                    } else {
                        "ConversationRelay"
                    };
                    let url = attrs.remove("url").ok_or(TwimlError::MissingAttribute {
                        element,
                        attribute: "url",
                    })?;
                    let target = if element == "Stream" {
                        ConnectTarget::Stream {
                            url,
                            parameters: BTreeMap::new(),
                        }
                    } else {
                        ConnectTarget::Relay {
                            url,
                            attributes: attrs,
                            parameters: BTreeMap::new(),
                        }
                    };
                    if let Some(slot) = connect.as_mut() {
                        slot.1 = Some(target);
                    }
                }
                (3, "Parameter") => {
                    if let Some((_, Some(target))) = connect.as_mut() {
                        let parameters = match target {
                            ConnectTarget::Stream { parameters, .. }
                            | ConnectTarget::Relay { parameters, .. } => parameters,
                        };
                        if let (Some(n), Some(v)) = (attrs.get("name"), attrs.get("value")) {
                            parameters.insert(n.clone(), v.clone());
                        }
                    }
                }
                _ => {}
            }
            if is_empty {
                close_element(&name, stack.len(), &mut connect, &mut say_text, &mut verbs)?;
            } else {
                stack.push(name);
            }
            continue;
        }
        match event {
            Event::Text(text) => {
                if let Some(say) = say_text.as_mut() {
                    let text = text
                        .unescape()
                        .map_err(|e| TwimlError::Xml(e.to_string()))?;
                    say.push_str(&text);
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                close_element(&name, stack.len(), &mut connect, &mut say_text, &mut verbs)?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_response {
        return Err(TwimlError::NoResponse);
    }
    Ok(verbs)
}

/// An element at `depth` (0 = `<Response>`) has closed.
fn close_element(
    name: &str,
    depth: usize,
    connect: &mut Option<(Option<String>, Option<ConnectTarget>)>,
    say_text: &mut Option<String>,
    verbs: &mut Vec<Verb>,
) -> Result<(), TwimlError> {
    if depth != 1 {
        return Ok(());
    }
    match name {
        "Connect" => {
            if let Some((action, target)) = connect.take() {
                let target = target.ok_or(TwimlError::EmptyConnect)?;
                verbs.push(Verb::Connect { action, target });
            }
        }
        "Say" => verbs.push(Verb::Say(say_text.take().unwrap_or_default())),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use voxbridge_twilio::twiml::{Connect, ConversationRelay, Parameter, Response, Say, Stream};

    use super::*;

    #[test]
    fn reads_connect_stream_with_parameters_from_our_builder() {
        let xml = Response::new()
            .push(Connect::stream(
                Stream::new("wss://voice.example.com/media")
                    .unwrap()
                    .parameter(Parameter::new("agent", "echo").unwrap())
                    .parameter(Parameter::new("firstName", "Zoë & \"Bo\"").unwrap()),
            ))
            .to_xml();
        let verbs = parse(&xml).unwrap();
        assert_eq!(
            verbs,
            [Verb::Connect {
                action: None,
                target: ConnectTarget::Stream {
                    url: "wss://voice.example.com/media".into(),
                    parameters: BTreeMap::from([
                        ("agent".into(), "echo".into()),
                        ("firstName".into(), "Zoë & \"Bo\"".into())
                    ])
                }
            }]
        );
    }

    #[test]
    fn reads_connect_relay_with_action_attributes_and_parameters() {
        let xml = Response::new()
            .push(
                Connect::conversation_relay(
                    ConversationRelay::new("wss://voice.example.com/relay")
                        .unwrap()
                        .welcome_greeting("Hi <there>")
                        .parameter(Parameter::new("candidateId", "c-1").unwrap()),
                )
                .action("https://api.example.com/twilio/relay/action"),
            )
            .to_xml();
        let Verb::Connect { action, target } = &parse(&xml).unwrap()[0] else {
            panic!("expected connect");
        };
        assert_eq!(
            action.as_deref(),
            Some("https://api.example.com/twilio/relay/action")
        );
        let ConnectTarget::Relay {
            url,
            attributes,
            parameters,
        } = target
        else {
            panic!("expected relay");
        };
        assert_eq!(url, "wss://voice.example.com/relay");
        assert_eq!(attributes["welcomeGreeting"], "Hi <there>");
        assert_eq!(parameters["candidateId"], "c-1");
    }

    #[test]
    fn reads_say_pause_hangup_and_skips_unknown_verbs() {
        let xml = Response::new()
            .push(Say::new("Goodbye & thanks."))
            .to_xml()
            .replace(
                "</Response>",
                "<Pause length=\"2\"/><Gather/><Hangup/></Response>",
            );
        assert_eq!(
            parse(&xml).unwrap(),
            [
                Verb::Say("Goodbye & thanks.".into()),
                Verb::Pause(2),
                Verb::Other("Gather".into()),
                Verb::Hangup
            ]
        );
    }

    #[test]
    fn rejects_non_twiml() {
        assert!(matches!(parse("<Foo/>"), Err(TwimlError::NoResponse)));
        assert!(parse("not xml <").is_err());
        assert!(matches!(
            parse("<Response><Connect></Connect></Response>"),
            Err(TwimlError::EmptyConnect)
        ));
        assert!(matches!(
            parse("<Response><Connect><Stream/></Connect></Response>"),
            Err(TwimlError::MissingAttribute { .. })
        ));
    }
}
