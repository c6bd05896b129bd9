//! Bot audio: any rate -> 8 kHz -> mu-law -> a bounded queue -> frames paced against a model of
//! Twilio's playout buffer.
//!
//! Twilio plays what it receives in real time, in order, from when it arrives
//! (<https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-media-message>),
//! so after sending `d` of audio at `now` its buffer ends at
//! `buffered_until = max(buffered_until, now) + d`. A frame may go if, after it, the buffer ahead
//! of `now` is at most the lead (or the buffer was empty, so a lead shorter than a frame still
//! plays). Holding the lead small keeps `clear` effective: at most the lead is ever in Twilio's
//! hands when the caller barges in.
//!
//! Marks sit in the queue at sample positions; a frame never straddles a mark, so the mark that
//! ends a chunk follows the chunk's last sample exactly (that frame is shorter than 20 ms).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use voxbridge_audio::mulaw;
use voxbridge_audio::resample::{ResampleError, StreamResampler};

use crate::TurnId;

/// Twilio's rate.
pub(crate) const WIRE_RATE: u32 = 8000;
/// 20 ms at 8 kHz: one frame of mu-law.
pub(crate) const FRAME_SAMPLES: usize = 160;
/// One 8 kHz sample.
const SAMPLE_NANOS: u64 = 125_000;

/// Playout time of `samples` at 8 kHz.
pub(crate) fn wire_duration(samples: usize) -> Duration {
    Duration::from_nanos(samples as u64 * SAMPLE_NANOS)
}

/// A mark waiting in the queue behind the audio before it.
#[derive(Debug)]
pub(crate) struct QueuedMark {
    /// Stream position (8 kHz samples since the call's first queued sample) it follows.
    at: u64,
    pub(crate) turn: TurnId,
    pub(crate) chunk: u32,
    pub(crate) text: String,
    /// 8 kHz samples of the chunk it ends (queued since the previous mark or `clear`).
    pub(crate) samples: u64,
}

/// What the queue can give out at `now`.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// A mark is due (all audio before it is sent).
    Mark(QueuedMark),
    /// A frame of mu-law is due.
    Frame(&'a [u8]),
    /// Nothing may go now.
    Wait,
}

pub(crate) struct Playout {
    lead: Duration,
    max_queue: usize,
    /// Unsent mu-law, sample `sent_total` first.
    queue: VecDeque<u8>,
    queued_total: u64,
    sent_total: u64,
    marks: VecDeque<QueuedMark>,
    /// Position (in queued samples) of the last mark placed, or where a `clear` left the
    /// queue: audio queued beyond it belongs to an open chunk, sent or not.
    last_mark_at: u64,
    /// Converts brain audio to 8 kHz; kept across chunks while the rate stays the same.
    resampler: Option<StreamResampler>,
    /// The resampler holds input since its last flush.
    resampler_dirty: bool,
    scratch: Vec<i16>,
    frame: [u8; FRAME_SAMPLES],
    /// End of the audio in Twilio's (modelled) buffer.
    buffered_until: Instant,
    /// Turns whose first sample sits at this queue position and whose first frame has not
    /// been sent yet, oldest first.
    turn_starts: VecDeque<(u64, TurnId)>,
}

impl std::fmt::Debug for Playout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playout")
            .field("lead", &self.lead)
            .field("queued", &self.queue.len())
            .field("marks", &self.marks.len())
            .field("sent_total", &self.sent_total)
            .field("buffered_until", &self.buffered_until)
            .finish_non_exhaustive()
    }
}

impl Playout {
    pub(crate) fn new(lead: Duration, max_queued: Duration, now: Instant) -> Self {
        Self {
            lead,
            max_queue: (max_queued.as_nanos() / u128::from(SAMPLE_NANOS)).min(usize::MAX as u128)
                as usize,
            queue: VecDeque::new(),
            queued_total: 0,
            sent_total: 0,
            marks: VecDeque::new(),
            last_mark_at: 0,
            resampler: None,
            resampler_dirty: false,
            scratch: Vec::new(),
            frame: [0; FRAME_SAMPLES],
            buffered_until: now,
            turn_starts: VecDeque::new(),
        }
    }

    /// The next audio queued belongs to `turn`, which has had none before: [`Playout::take_started`]
    /// reports it once the frame holding its first sample has been sent.
    pub(crate) fn note_turn_start(&mut self, turn: TurnId) {
        self.turn_starts.push_back((self.queued_total, turn));
    }

    /// A turn whose first frame has been sent since the last call, oldest first.
    pub(crate) fn take_started(&mut self) -> Option<TurnId> {
        if self
            .turn_starts
            .front()
            .is_some_and(|&(at, _)| at < self.sent_total)
        {
            return self.turn_starts.pop_front().map(|(_, turn)| turn);
        }
        None
    }

    /// Queues brain audio; returns how many 8 kHz samples were dropped because the queue is full.
    pub(crate) fn push_audio(&mut self, pcm: &[i16], rate: u32) -> Result<u64, ResampleError> {
        if rate == WIRE_RATE {
            // No conversion: flush anything a previous rate left in the resampler first.
            self.flush_resampler();
            return Ok(self.enqueue_pcm(pcm));
        }
        if self
            .resampler
            .as_ref()
            .is_none_or(|r| r.input_rate() != rate)
        {
            let fresh = StreamResampler::new(rate, WIRE_RATE)?;
            self.flush_resampler();
            self.resampler = Some(fresh);
        }
        // 20 ms of input at a time, so the scratch buffer stays one frame long however much
        // audio the brain hands over at once.
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut dropped = 0;
        let step = (rate / 50).max(1) as usize;
        for piece in pcm.chunks(step) {
            scratch.clear();
            if let Some(r) = &mut self.resampler {
                r.process(piece, &mut scratch);
                self.resampler_dirty = true;
            }
            dropped += self.enqueue_pcm(&scratch);
        }
        self.scratch = scratch;
        Ok(dropped)
    }

    /// Queues G.711 mu-law at 8 kHz as it is (no decoding); returns how many samples were
    /// dropped because the queue is full.
    pub(crate) fn push_mulaw(&mut self, mulaw: &[u8]) -> u64 {
        // Audio from an earlier rate still in the resampler plays first.
        self.flush_resampler();
        let room = self.max_queue.saturating_sub(self.queue.len());
        let take = mulaw.len().min(room);
        self.queue.extend(&mulaw[..take]);
        self.queued_total += take as u64;
        (mulaw.len() - take) as u64
    }

    /// Ends a chunk: drains the resampler, then places a mark after the last sample.
    pub(crate) fn push_mark(&mut self, turn: TurnId, chunk: u32, text: String) {
        self.flush_resampler();
        let samples = self.queued_total - self.last_mark_at;
        self.last_mark_at = self.queued_total;
        self.marks.push_back(QueuedMark {
            at: self.queued_total,
            turn,
            chunk,
            text,
            samples,
        });
    }

    /// Whether audio has been queued since the last mark (a chunk is open), including audio
    /// already sent: its end still needs a mark to know when the caller heard it.
    pub(crate) fn has_unmarked_audio(&self) -> bool {
        self.resampler_dirty || self.last_mark_at < self.queued_total
    }

    /// Nothing is queued here (audio, marks or resampler input).
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.marks.is_empty() && !self.resampler_dirty
    }

    /// Audio accepted from the brain but not yet sent to Twilio (8 kHz samples as time).
    pub(crate) fn queued(&self) -> Duration {
        Duration::from_nanos(self.queue.len() as u64 * SAMPLE_NANOS)
    }

    /// Audio in Twilio's modelled buffer ahead of `now`.
    pub(crate) fn ahead(&self, now: Instant) -> Duration {
        self.buffered_until.saturating_duration_since(now)
    }

    /// End of the audio in Twilio's modelled buffer.
    pub(crate) fn buffered_until(&self) -> Instant {
        self.buffered_until
    }

    /// Drops everything queued (Twilio was sent `clear`, or the call is over): the modelled
    /// buffer is empty from `now`.
    pub(crate) fn clear(&mut self, now: Instant) {
        self.queue.clear();
        self.queued_total = self.sent_total;
        self.last_mark_at = self.queued_total;
        self.marks.clear();
        self.turn_starts.clear();
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
        self.resampler_dirty = false;
        self.buffered_until = self.buffered_until.min(now);
        // A long reply may have grown the queue; give the memory back.
        if self.queue.capacity() > 8 * 1024 {
            self.queue.shrink_to(8 * 1024);
        }
    }

    /// The next item that may go at `now`, and the model update for it.
    pub(crate) fn next(&mut self, now: Instant) -> Next<'_> {
        if self.marks.front().is_some_and(|m| m.at <= self.sent_total) {
            return self.marks.pop_front().map_or(Next::Wait, Next::Mark);
        }
        let Some(len) = self.ready_frame() else {
            return Next::Wait;
        };
        if now < self.send_at(len) {
            return Next::Wait;
        }
        for (dst, src) in self.frame.iter_mut().zip(self.queue.drain(..len)) {
            *dst = src;
        }
        self.sent_total += len as u64;
        self.buffered_until = self.buffered_until.max(now) + wire_duration(len);
        if self.queue.is_empty() && self.queue.capacity() > 8 * 1024 {
            self.queue.shrink_to(8 * 1024);
        }
        Next::Frame(&self.frame[..len])
    }

    /// When the next item may go (`now` if it may go now); `None` if nothing is ready.
    pub(crate) fn next_send_at(&self, now: Instant) -> Option<Instant> {
        if self.marks.front().is_some_and(|m| m.at <= self.sent_total) {
            return Some(now);
        }
        self.ready_frame().map(|len| self.send_at(len))
    }

    /// Earliest instant a frame of `len` samples may be sent: when the buffer ahead is at most
    /// `lead - len`, or empty if the lead is shorter than the frame.
    fn send_at(&self, len: usize) -> Instant {
        let slack = self.lead.saturating_sub(wire_duration(len));
        self.buffered_until
            .checked_sub(slack)
            .unwrap_or(self.buffered_until)
    }

    /// Length of the next frame if one is complete: 160 samples, or up to the next mark.
    fn ready_frame(&self) -> Option<usize> {
        let available = (self.queued_total - self.sent_total) as usize;
        match self.marks.front() {
            Some(m) => {
                let until = (m.at - self.sent_total) as usize;
                (until > 0).then(|| until.min(FRAME_SAMPLES))
            }
            None => (available >= FRAME_SAMPLES).then_some(FRAME_SAMPLES),
        }
    }

    fn flush_resampler(&mut self) {
        if !self.resampler_dirty {
            return;
        }
        self.resampler_dirty = false;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if let Some(r) = &mut self.resampler {
            r.flush(&mut scratch);
        }
        self.enqueue_pcm(&scratch);
        self.scratch = scratch;
    }

    /// Encodes and queues 8 kHz samples up to the cap; returns how many were dropped.
    fn enqueue_pcm(&mut self, pcm: &[i16]) -> u64 {
        let room = self.max_queue.saturating_sub(self.queue.len());
        let take = pcm.len().min(room);
        self.queue
            .extend(pcm[..take].iter().map(|&s| mulaw::encode_sample(s)));
        self.queued_total += take as u64;
        (pcm.len() - take) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Playout, now: Instant) -> Vec<Result<usize, (TurnId, u32)>> {
        let mut out = Vec::new();
        loop {
            match p.next(now) {
                Next::Mark(m) => out.push(Err((m.turn, m.chunk))),
                Next::Frame(f) => out.push(Ok(f.len())),
                Next::Wait => return out,
            }
        }
    }

    #[test]
    fn first_burst_fills_the_lead_then_one_frame_per_20_ms() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_secs(60), t0);
        p.push_audio(&vec![1000; 8000], 8000).unwrap();
        assert_eq!(drain(&mut p, t0), vec![Ok(160); 5]);
        assert_eq!(p.ahead(t0), Duration::from_millis(100));
        assert_eq!(p.next_send_at(t0), Some(t0 + Duration::from_millis(20)));
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(19)), vec![]);
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(20)), vec![Ok(160)]);
    }

    #[test]
    fn audio_already_sent_without_a_mark_is_still_unmarked() {
        // 8 kHz brain audio needs no resampler flush; once it is sent the queue is empty, but
        // its end has no mark yet, so the turn cannot count as played.
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_secs(60), t0);
        p.push_audio(&[5; 320], 8000).unwrap();
        assert_eq!(drain(&mut p, t0), vec![Ok(160), Ok(160)]);
        assert!(
            p.has_unmarked_audio(),
            "sent audio without a mark is an open chunk"
        );
        p.push_mark(TurnId(1), 0, "hi".into());
        assert!(!p.has_unmarked_audio());
        p.push_audio(&[5; 160], 8000).unwrap();
        assert!(p.has_unmarked_audio());
        p.clear(t0);
        assert!(!p.has_unmarked_audio(), "a clear drops the open chunk");
    }

    #[test]
    fn chunk_end_gives_a_short_frame_then_its_mark() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_secs(60), t0);
        p.push_audio(&[5; 200], 8000).unwrap();
        assert!(p.has_unmarked_audio());
        p.push_mark(TurnId(1), 0, "hi".into());
        assert!(!p.has_unmarked_audio());
        assert_eq!(
            drain(&mut p, t0),
            vec![Ok(160), Ok(40), Err((TurnId(1), 0))]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn a_partial_frame_waits_for_more_audio() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_secs(60), t0);
        p.push_audio(&[5; 100], 8000).unwrap();
        assert_eq!(drain(&mut p, t0), vec![]);
        assert_eq!(p.next_send_at(t0), None);
        p.push_audio(&[5; 100], 8000).unwrap();
        assert_eq!(drain(&mut p, t0), vec![Ok(160)]);
    }

    #[test]
    fn queue_is_capped_and_overflow_counted() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_millis(50), t0);
        assert_eq!(p.push_audio(&[0; 300], 8000).unwrap(), 0);
        assert_eq!(p.push_audio(&[0; 300], 8000).unwrap(), 200);
    }

    #[test]
    fn resampled_chunk_has_the_exact_length() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_secs(10), Duration::from_secs(60), t0);
        // 20 ms at 24 kHz in odd pieces -> exactly 160 samples at 8 kHz after the chunk ends.
        p.push_audio(&[300; 123], 24_000).unwrap();
        p.push_audio(&[300; 357], 24_000).unwrap();
        p.push_mark(TurnId(0), 0, String::new());
        assert_eq!(drain(&mut p, t0), vec![Ok(160), Err((TurnId(0), 0))]);
    }

    #[test]
    fn mulaw_is_queued_byte_for_byte_and_marks_count_their_chunk() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_secs(60), t0);
        // Every code, including 0x7F (negative zero), which a decode/encode round trip would
        // turn into 0xFF.
        let codes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(p.push_mulaw(&codes), 0);
        p.push_mark(TurnId(1), 0, String::new());
        let mut sent = Vec::new();
        loop {
            match p.next(t0) {
                Next::Frame(f) => sent.extend_from_slice(f),
                Next::Mark(m) => {
                    assert_eq!(m.samples, 256);
                    break;
                }
                Next::Wait => panic!("the mark must follow the audio"),
            }
        }
        assert_eq!(sent, codes);
        p.push_mulaw(&[0xFF; 80]);
        p.push_mark(TurnId(1), 1, String::new());
        assert!(matches!(p.next(t0), Next::Frame(f) if f.len() == 80));
        assert!(matches!(p.next(t0), Next::Mark(m) if m.samples == 80));
    }

    #[test]
    fn mulaw_queue_is_capped() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(100), Duration::from_millis(50), t0);
        assert_eq!(p.push_mulaw(&[0xFF; 300]), 0);
        assert_eq!(p.push_mulaw(&[0xFF; 300]), 200);
    }

    #[test]
    fn lead_shorter_than_a_frame_still_plays() {
        let t0 = Instant::now();
        let mut p = Playout::new(Duration::from_millis(5), Duration::from_secs(60), t0);
        p.push_audio(&[0; 480], 8000).unwrap();
        assert_eq!(drain(&mut p, t0), vec![Ok(160)]);
        assert_eq!(p.next_send_at(t0), Some(t0 + Duration::from_millis(20)));
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(20)), vec![Ok(160)]);
    }
}
