//! Sans-IO Twilio protocols. No tokio, no sockets, no clock.
