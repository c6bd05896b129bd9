//! Twilio's outbound playout buffer, sans-IO: what the caller hears and when.
//!
//! Twilio buffers the bridge's `media` and plays it in order at 8,000 bytes/s (mu-law 8 kHz);
//! a `mark` is echoed when the audio queued before it has finished playing, or at once when
//! nothing is buffered; `clear` empties the buffer and Twilio echoes every pending mark
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages>). This model keeps
//! that timeline on time passed in (microseconds since the call started), so the async caller
//! stays thin and the model is tested on virtual time.
//!
//! It also measures what a caller would notice: **lateness** (audio that arrives after the
//! buffer ran dry in the middle of a bot turn: the caller heard a gap) and **dropped frames**
//! (20 ms slots of such gaps). A gap longer than `turn_gap_us` is taken as the pause between
//! two bot turns, not an underrun.

use std::collections::VecDeque;

/// mu-law bytes per millisecond at 8 kHz.
const BYTES_PER_MS: u64 = 8;
/// mu-law code for silence (+0).
pub const MULAW_SILENCE: u8 = 0xFF;
/// One Media Streams frame: 20 ms.
pub const FRAME_US: u64 = 20_000;

/// What happened when a `media` message was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// How long the buffer had been empty inside a bot turn when this audio arrived (0 when
    /// the buffer still held audio, or when this audio starts a new turn).
    pub lateness_us: u64,
    /// This audio starts a bot turn (the buffer had been idle longer than the turn gap).
    pub turn_start: bool,
}

/// A mark that played out (or was flushed by `clear`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayedMark {
    /// The mark's name, echoed back verbatim.
    pub name: String,
    /// Whether a `clear` flushed it (its audio was not heard).
    pub cleared: bool,
}

/// The buffer of one call.
#[derive(Debug)]
pub struct Playout {
    queue: VecDeque<u8>,
    /// Marks, each at the absolute byte position (bytes ever queued) it waits for.
    marks: VecDeque<(u64, String)>,
    /// Bytes ever queued (cleared bytes included).
    queued_total: u64,
    /// Bytes ever played or cleared.
    consumed_total: u64,
    /// Time up to which playback has been computed.
    now_us: u64,
    /// Sub-byte remainder of elapsed time, in byte-microseconds.
    carry: u64,
    /// When the buffer last ran dry (`None` while it holds audio).
    idle_since: Option<u64>,
    turn_gap_us: u64,
    /// Heard audio, one byte per 1/8 ms of call time, when recording.
    heard: Option<Vec<u8>>,
    /// Slots (20 ms) of mid-turn gaps.
    dropped_frames: u64,
    /// Bytes of bot audio played to the caller.
    played_bytes: u64,
    /// Bot turns started.
    turns: u64,
    /// A `clear` ended the turn: the next audio starts a new one whatever the gap.
    turn_ended: bool,
}

impl Playout {
    /// An empty buffer at call time 0. `turn_gap_us`: a gap longer than this between bot
    /// audio is a new turn, not an underrun. `record`: keep the heard audio.
    pub fn new(turn_gap_us: u64, record: bool) -> Self {
        Self {
            queue: VecDeque::with_capacity(8 * 1024),
            marks: VecDeque::new(),
            queued_total: 0,
            consumed_total: 0,
            now_us: 0,
            carry: 0,
            idle_since: Some(0),
            turn_gap_us,
            heard: record.then(Vec::new),
            dropped_frames: 0,
            played_bytes: 0,
            turns: 0,
            turn_ended: true,
        }
    }

    /// Plays the buffer up to `now_us` and appends the marks whose audio has finished to
    /// `marks`. Time never goes back: an earlier `now_us` is ignored.
    pub fn advance(&mut self, now_us: u64, marks: &mut Vec<PlayedMark>) {
        if now_us > self.now_us {
            let elapsed = now_us - self.now_us;
            let budget = self.carry + elapsed * BYTES_PER_MS;
            let bytes = budget / 1000;
            self.carry = budget % 1000;
            let available = self.queue.len() as u64;
            let play = bytes.min(available);
            if play > 0 {
                let play_usize = play as usize;
                if let Some(heard) = &mut self.heard {
                    heard.extend(self.queue.drain(..play_usize));
                } else {
                    self.queue.drain(..play_usize);
                }
                self.consumed_total += play;
                self.played_bytes += play;
            }
            if let Some(heard) = &mut self.heard {
                let silent = (bytes - play) as usize;
                heard.resize(heard.len() + silent, MULAW_SILENCE);
            }
            if self.queue.is_empty() && self.idle_since.is_none() {
                // The exact moment the last byte played.
                let played_for_us = play * 1000 / BYTES_PER_MS;
                self.idle_since = Some(self.now_us + played_for_us.min(elapsed));
            }
            self.now_us = now_us;
        }
        self.release_marks(marks);
    }

    fn release_marks(&mut self, out: &mut Vec<PlayedMark>) {
        while self
            .marks
            .front()
            .is_some_and(|(at, _)| *at <= self.consumed_total)
        {
            if let Some((_, name)) = self.marks.pop_front() {
                out.push(PlayedMark {
                    name,
                    cleared: false,
                });
            }
        }
    }

    /// Queues bot audio received at `now_us` (call [`Playout::advance`] to `now_us` first).
    pub fn push_media(&mut self, now_us: u64, mulaw: &[u8]) -> Arrival {
        let mut arrival = Arrival {
            lateness_us: 0,
            turn_start: false,
        };
        if mulaw.is_empty() {
            return arrival;
        }
        if let Some(since) = self.idle_since.take() {
            let gap = now_us.saturating_sub(since);
            if self.turn_ended || gap > self.turn_gap_us {
                arrival.turn_start = true;
                self.turn_ended = false;
                self.turns += 1;
            } else {
                arrival.lateness_us = gap;
                // Whole 20 ms frames of silence the caller heard inside the turn.
                self.dropped_frames += gap / FRAME_US;
            }
        }
        self.queue.extend(mulaw);
        self.queued_total += mulaw.len() as u64;
        arrival
    }

    /// Queues a mark behind the audio queued so far; with nothing queued it is due at once
    /// (it comes out of the next [`Playout::advance`]).
    pub fn push_mark(&mut self, name: &str) {
        self.marks.push_back((self.queued_total, name.to_owned()));
    }

    /// `clear`: drops the queued audio and returns every pending mark, flagged as cleared.
    /// Returns how many bytes of bot audio were dropped.
    pub fn clear(&mut self, now_us: u64, marks: &mut Vec<PlayedMark>) -> u64 {
        let dropped = self.queue.len() as u64;
        self.queue.clear();
        self.consumed_total = self.queued_total;
        marks.extend(self.marks.drain(..).map(|(_, name)| PlayedMark {
            name,
            cleared: true,
        }));
        // A clear ends the turn: the next audio starts a new one.
        self.idle_since = Some(now_us);
        self.turn_ended = true;
        dropped
    }

    /// Whether bot audio is playing right now.
    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Buffered bot audio, in milliseconds.
    pub fn buffered_ms(&self) -> u64 {
        self.queue.len() as u64 / BYTES_PER_MS
    }

    /// Since when the buffer has been empty (`None` while playing).
    pub fn idle_since_us(&self) -> Option<u64> {
        self.idle_since
    }

    /// Slots (20 ms) of gaps inside bot turns so far.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Bytes of bot audio the caller heard.
    pub fn played_bytes(&self) -> u64 {
        self.played_bytes
    }

    /// Bot turns started so far.
    pub fn turns(&self) -> u64 {
        self.turns
    }

    /// The heard audio (mu-law 8 kHz, silence where nothing played), when recording.
    pub fn heard(&self) -> Option<&[u8]> {
        self.heard.as_deref()
    }

    /// Takes the heard audio out, when recording.
    pub fn take_heard(&mut self) -> Option<Vec<u8>> {
        self.heard.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn names(marks: &[PlayedMark]) -> Vec<&str> {
        marks.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn mark_is_echoed_only_when_its_audio_has_played() {
        let mut p = Playout::new(500 * MS, false);
        let mut marks = Vec::new();
        p.advance(0, &mut marks);
        assert!(p.push_media(0, &[1; 160]).turn_start);
        p.push_mark("m1");
        p.advance(19 * MS, &mut marks);
        assert!(marks.is_empty(), "152 of 160 bytes played");
        p.advance(20 * MS, &mut marks);
        assert_eq!(names(&marks), ["m1"]);
        assert!(!marks[0].cleared);
        assert!(!p.is_playing());
    }

    #[test]
    fn mark_with_nothing_buffered_is_echoed_at_once() {
        let mut p = Playout::new(500 * MS, false);
        let mut marks = Vec::new();
        p.advance(100 * MS, &mut marks);
        p.push_mark("now");
        p.advance(100 * MS, &mut marks);
        assert_eq!(names(&marks), ["now"]);
    }

    #[test]
    fn clear_flushes_audio_and_echoes_pending_marks_as_cleared() {
        let mut p = Playout::new(500 * MS, true);
        let mut marks = Vec::new();
        p.push_media(0, &[7; 800]);
        p.push_mark("a");
        p.push_media(0, &[7; 800]);
        p.push_mark("b");
        p.advance(40 * MS, &mut marks);
        assert!(marks.is_empty());
        assert_eq!(p.clear(40 * MS, &mut marks), 1600 - 320);
        assert_eq!(names(&marks), ["a", "b"]);
        assert!(marks.iter().all(|m| m.cleared));
        assert!(!p.is_playing());
        // After the clear, silence is heard.
        p.advance(60 * MS, &mut marks);
        let heard = p.heard().unwrap();
        assert_eq!(heard.len(), 480);
        assert!(heard[..320].iter().all(|&b| b == 7));
        assert!(heard[320..].iter().all(|&b| b == MULAW_SILENCE));
        // The next audio starts a new turn, not a late frame.
        let arrival = p.push_media(70 * MS, &[1; 160]);
        assert!(arrival.turn_start);
        assert_eq!(arrival.lateness_us, 0);
    }

    #[test]
    fn gap_inside_a_turn_is_lateness_and_dropped_frames() {
        let mut p = Playout::new(500 * MS, false);
        let mut marks = Vec::new();
        p.push_media(0, &[1; 160]);
        p.advance(20 * MS, &mut marks);
        assert_eq!(p.idle_since_us(), Some(20 * MS));
        p.advance(65 * MS, &mut marks);
        let arrival = p.push_media(65 * MS, &[1; 160]);
        assert_eq!(arrival.lateness_us, 45 * MS);
        assert!(!arrival.turn_start);
        assert_eq!(p.dropped_frames(), 2);
        // Arriving while audio is buffered is on time.
        assert_eq!(p.push_media(70 * MS, &[1; 160]).lateness_us, 0);
    }

    #[test]
    fn idle_time_is_the_moment_the_last_byte_played() {
        let mut p = Playout::new(500 * MS, false);
        let mut marks = Vec::new();
        p.push_media(0, &[1; 80]);
        // A coarse step: the buffer ran dry at 10 ms, not at 100 ms.
        p.advance(100 * MS, &mut marks);
        assert_eq!(p.idle_since_us(), Some(10 * MS));
        assert_eq!(p.played_bytes(), 80);
    }

    #[test]
    fn long_pause_is_a_new_turn() {
        let mut p = Playout::new(500 * MS, false);
        let mut marks = Vec::new();
        p.push_media(0, &[1; 160]);
        p.advance(2000 * MS, &mut marks);
        let arrival = p.push_media(2000 * MS, &[1; 160]);
        assert!(arrival.turn_start);
        assert_eq!(p.turns(), 2);
        assert_eq!(p.dropped_frames(), 0);
    }

    #[test]
    fn playback_is_exactly_real_time_over_odd_steps() {
        let mut p = Playout::new(500 * MS, true);
        let mut marks = Vec::new();
        p.push_media(0, &[3; 8000]);
        let mut t = 0;
        while t < 1_000_000 {
            t += 333;
            p.advance(t.min(1_000_000), &mut marks);
        }
        assert_eq!(p.played_bytes(), 8000);
        assert_eq!(p.heard().unwrap().len(), 8000);
    }
}
