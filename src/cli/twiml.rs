//! `voxbridge twiml`: print the TwiML that connects a call to voxbridge, for pasting into a
//! TwiML Bin or checking what a webhook will answer.

use std::io::Write;

use anyhow::Result;
use voxbridge_twilio::twiml::{Connect, ConversationRelay, Parameter, Response, Stream};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// `<Connect><Stream>`: bidirectional Media Streams to a wss:// URL.
    Stream {
        /// WebSocket URL of voxbridge's /media endpoint (wss://, no query string).
        #[arg(long)]
        url: String,
        /// A `<Parameter>` passed to the stream's `start.customParameters`, as KEY=VALUE.
        #[arg(long = "param", value_parser = super::parse_pair)]
        params: Vec<(String, String)>,
    },
    /// `<Connect><ConversationRelay>`: Twilio does speech, voxbridge exchanges text.
    Relay {
        /// WebSocket URL of voxbridge's /relay endpoint (wss://).
        #[arg(long)]
        url: String,
        /// Text Twilio speaks when the call connects.
        #[arg(long)]
        welcome_greeting: Option<String>,
        /// Send DTMF key presses over the WebSocket.
        #[arg(long)]
        dtmf_detection: bool,
        /// A `<Parameter>` passed to `setup.customParameters`, as KEY=VALUE.
        #[arg(long = "param", value_parser = super::parse_pair)]
        params: Vec<(String, String)>,
    },
}

pub(crate) fn run(command: &Command) -> Result<()> {
    let connect = match command {
        Command::Stream { url, params } => {
            let mut stream = Stream::new(url.as_str())?;
            for (name, value) in params {
                stream = stream.parameter(Parameter::new(name.as_str(), value.as_str())?);
            }
            Connect::stream(stream)
        }
        Command::Relay {
            url,
            welcome_greeting,
            dtmf_detection,
            params,
        } => {
            let mut relay = ConversationRelay::new(url.as_str())?;
            if let Some(greeting) = welcome_greeting {
                relay = relay.welcome_greeting(greeting.as_str());
            }
            if *dtmf_detection {
                relay = relay.dtmf_detection(true);
            }
            for (name, value) in params {
                relay = relay.parameter(Parameter::new(name.as_str(), value.as_str())?);
            }
            Connect::conversation_relay(relay)
        }
    };
    let xml = Response::new().push(connect).to_xml();
    writeln!(std::io::stdout().lock(), "{xml}")?;
    Ok(())
}
