//! WebSocket close codes (RFC 6455 section 7.4.1) that end a session, in one place for both
//! transports: the Media Streams [`Session`](crate::Session), the ConversationRelay
//! [`RelaySession`](crate::relay::RelaySession) and the shells that drive them.

/// 1000: normal closure (the call or session is over).
pub const NORMAL: u16 = 1000;
/// 1001: going away (server shutdown, Media Streams start and idle timeouts).
pub const GOING_AWAY: u16 = 1001;
/// 1007: invalid frame payload data (a run of malformed messages).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: policy violation (protocol misuse, slow peer, ConversationRelay setup timeout,
/// unknown agent).
pub const POLICY: u16 = 1008;
/// 1009: message too big (a message beyond what the WebSocket layer accepts; the socket cannot
/// go on after it).
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// 1011: internal error (an agent that exists but could not start).
pub const INTERNAL_ERROR: u16 = 1011;
