//! Bot turn bookkeeping: which turn takes audio, which marks went out, what the caller heard.
//!
//! Mark names are `t{turn}c{chunk}`: unique per session because turn ids only grow and chunks
//! count up within a turn. Twilio echoes marks in the order sent, when the audio before them has
//! played, and echoes every pending mark straight after a `clear`
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-clear-message>);
//! marks sent before a `clear` are flagged, so their echoes are not taken as heard.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::TurnId;

/// A turn that has not finished (played out or interrupted).
#[derive(Debug)]
pub(crate) struct TurnRecord {
    pub(crate) id: TurnId,
    /// Concatenated text of the chunks whose marks came back.
    pub(crate) heard: String,
    /// 8 kHz samples of the chunks whose marks came back.
    pub(crate) heard_samples: u64,
    /// Chunks (marks) queued for this turn.
    marks: u32,
    /// Marks of this turn echoed (heard).
    echoed: u32,
    /// `TurnEnd` (or an implied end) arrived.
    ended: bool,
}

#[derive(Debug)]
struct SentMark {
    turn: TurnId,
    chunk: u32,
    text: String,
    /// 8 kHz samples of the chunk this mark ends.
    samples: u64,
    /// Sent before a `clear`: its echo does not mean it was heard.
    cleared: bool,
}

/// Whether audio for a turn is taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The open turn.
    Open,
    /// A newer turn: open it, after ending the open one if there is one.
    New { end: Option<TurnId> },
    /// An older, ended or interrupted turn: drop.
    Stale,
}

/// A mark echo that matches nothing sent.
#[derive(Debug)]
pub(crate) struct UnknownMark;

#[derive(Debug, Default)]
pub(crate) struct Turns {
    records: VecDeque<TurnRecord>,
    open: Option<TurnId>,
    next_chunk: u32,
    newest: Option<TurnId>,
    sent: VecDeque<SentMark>,
    /// Sent marks neither echoed nor cleared.
    outstanding: usize,
}

impl Turns {
    pub(crate) fn admit(&self, turn: TurnId) -> Admit {
        if self.open == Some(turn) {
            Admit::Open
        } else if self.newest.is_none_or(|n| turn > n) {
            Admit::New { end: self.open }
        } else {
            Admit::Stale
        }
    }

    /// Opens `turn` (newer than any seen) for audio.
    pub(crate) fn open(&mut self, turn: TurnId) {
        self.newest = Some(turn);
        self.open = Some(turn);
        self.next_chunk = 0;
        self.records.push_back(TurnRecord {
            id: turn,
            heard: String::new(),
            heard_samples: 0,
            marks: 0,
            echoed: 0,
            ended: false,
        });
    }

    /// The open turn, if any.
    pub(crate) fn open_turn(&self) -> Option<TurnId> {
        self.open
    }

    /// Allocates the next chunk number of the open turn (which must be `turn`).
    pub(crate) fn next_chunk(&mut self, turn: TurnId) -> u32 {
        if let Some(r) = self.records.iter_mut().find(|r| r.id == turn) {
            r.marks += 1;
        }
        let chunk = self.next_chunk;
        self.next_chunk += 1;
        chunk
    }

    /// Ends the open turn: it takes no more audio.
    pub(crate) fn end_open(&mut self) {
        if let Some(open) = self.open.take()
            && let Some(r) = self.records.iter_mut().find(|r| r.id == open)
        {
            r.ended = true;
        }
    }

    /// A mark left for Twilio, ending a chunk of `samples` 8 kHz samples.
    pub(crate) fn mark_sent(&mut self, turn: TurnId, chunk: u32, text: String, samples: u64) {
        self.sent.push_back(SentMark {
            turn,
            chunk,
            text,
            samples,
            cleared: false,
        });
        self.outstanding += 1;
    }

    /// Sent marks not yet echoed (and not cleared).
    pub(crate) fn outstanding_marks(&self) -> usize {
        self.outstanding
    }

    /// Twilio echoed mark `name`. It and every mark sent before it are done (audio plays in
    /// order); those not cleared count as heard.
    pub(crate) fn echo(&mut self, name: &str) -> Result<(), UnknownMark> {
        let (turn, chunk) = parse_mark_name(name).ok_or(UnknownMark)?;
        let index = self
            .sent
            .iter()
            .position(|m| m.turn == turn && m.chunk == chunk)
            .ok_or(UnknownMark)?;
        for mark in self.sent.drain(..=index) {
            if mark.cleared {
                continue;
            }
            self.outstanding -= 1;
            if let Some(r) = self.records.iter_mut().find(|r| r.id == mark.turn) {
                r.heard.push_str(&mark.text);
                r.heard_samples += mark.samples;
                r.echoed += 1;
            }
        }
        Ok(())
    }

    /// Removes and returns a turn that has ended and whose every mark came back.
    pub(crate) fn take_played(&mut self) -> Option<TurnRecord> {
        let index = self
            .records
            .iter()
            .position(|r| r.ended && r.echoed == r.marks)?;
        self.records.remove(index)
    }

    /// Audio for `turn` and older turns is no longer taken (the brain interrupted them). Call
    /// after [`Turns::interrupt_all`]; whether `turn` was never seen before (no audio of it
    /// reached the session).
    pub(crate) fn retire_through(&mut self, turn: TurnId) -> bool {
        let unseen = self.newest.is_none_or(|n| turn > n);
        if unseen {
            self.newest = Some(turn);
        }
        unseen
    }

    /// Whether any turn is unfinished.
    pub(crate) fn has_unfinished(&self) -> bool {
        !self.records.is_empty()
    }

    /// Barge-in or the end of the call: every unfinished turn is interrupted and taken out, the
    /// open turn is closed, and the marks in flight are flagged as cleared.
    pub(crate) fn interrupt_all(&mut self) -> impl Iterator<Item = TurnRecord> + '_ {
        self.open = None;
        for m in &mut self.sent {
            m.cleared = true;
            // Only the echo matters now; free the text.
            m.text = String::new();
        }
        self.outstanding = 0;
        self.records.drain(..)
    }
}

/// Writes the wire name of a mark into `out` (cleared first).
pub(crate) fn write_mark_name(out: &mut String, turn: TurnId, chunk: u32) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "t{}c{chunk}", turn.0);
}

/// Parses `t{turn}c{chunk}`.
fn parse_mark_name(name: &str) -> Option<(TurnId, u32)> {
    let (turn, chunk) = name.strip_prefix('t')?.split_once('c')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(turn) || !digits(chunk) {
        return None;
    }
    Some((TurnId(turn.parse().ok()?), chunk.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip_and_junk_is_rejected() {
        let mut name = String::new();
        write_mark_name(&mut name, TurnId(42), 7);
        assert_eq!(name, "t42c7");
        assert_eq!(parse_mark_name(&name), Some((TurnId(42), 7)));
        for bad in [
            "",
            "t",
            "tc",
            "t1c",
            "tc1",
            "x1c2",
            "t+1c2",
            "t1c2c3",
            "t99999999999999999999c1",
        ] {
            assert_eq!(parse_mark_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn admit_orders_turns() {
        let mut t = Turns::default();
        assert_eq!(t.admit(TurnId(1)), Admit::New { end: None });
        t.open(TurnId(1));
        assert_eq!(t.admit(TurnId(1)), Admit::Open);
        assert_eq!(t.admit(TurnId(0)), Admit::Stale);
        assert_eq!(
            t.admit(TurnId(2)),
            Admit::New {
                end: Some(TurnId(1))
            }
        );
        t.end_open();
        assert_eq!(t.admit(TurnId(1)), Admit::Stale);
    }

    #[test]
    fn echo_collects_heard_text_and_skips_cleared_marks() {
        let mut t = Turns::default();
        t.open(TurnId(1));
        for (i, text) in ["Hello. ", "How are you? "].into_iter().enumerate() {
            assert_eq!(t.next_chunk(TurnId(1)), i as u32);
            t.mark_sent(TurnId(1), i as u32, text.into(), 800 * (i as u64 + 1));
        }
        t.end_open();
        t.echo("t1c0").unwrap();
        assert!(t.take_played().is_none());
        assert_eq!(t.outstanding_marks(), 1);
        let interrupted: Vec<_> = t.interrupt_all().collect();
        assert_eq!(interrupted[0].heard, "Hello. ");
        assert_eq!(
            interrupted[0].heard_samples, 800,
            "only the echoed chunk counts"
        );
        assert_eq!(t.outstanding_marks(), 0);
        // The echo after the clear is recognised but not heard.
        t.echo("t1c1").unwrap();
        assert!(t.echo("t1c1").is_err());
    }

    #[test]
    fn retired_turns_take_no_audio() {
        let mut t = Turns::default();
        t.open(TurnId(1));
        let _ = t.interrupt_all().count();
        assert!(!t.retire_through(TurnId(1)), "turn 1 was seen");
        assert!(t.retire_through(TurnId(3)), "turn 3 was not");
        assert_eq!(t.admit(TurnId(2)), Admit::Stale);
        assert_eq!(t.admit(TurnId(3)), Admit::Stale);
        assert_eq!(t.admit(TurnId(4)), Admit::New { end: None });
    }
}
