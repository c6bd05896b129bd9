//! The load generator: N concurrent simulated calls straight to the bridge's WebSocket, with
//! ramp-up and a fixed talk time, measuring what callers would notice and what it costs.
//!
//! One task per call; every call's 20 ms frames run off tokio's shared timer wheel; frames
//! are encoded into reused buffers and measurements are relaxed atomic adds into one
//! [`Recorder`], so the generator's own cost stays small (it reports it: its CPU from
//! `/proc/self/stat`). With a server PID it samples the server's CPU and RSS from `/proc`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxbridge_twilio::sid::{AccountSid, CallSid, StreamSid};

use crate::call::TranscriptTap;
use crate::media_call::{MediaCall, MediaCallOptions, run_media_call};
use crate::playout::FRAME_US;
use crate::relay_call::{RelayCall, RelayCallOptions, run_relay_call, setup_message};
use crate::report::{Panel, svg};
use crate::scenario::{Action, Step, Trigger};
use crate::stats::{Recorder, Summary};
use crate::ws::Route;

/// What each simulated call exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Media Streams with the `echo` agent: the whole audio path, no providers.
    MediaEcho,
    /// Media Streams with the speech pipeline on stand-in providers (agent chosen with
    /// `--agent`; needs the pipeline to be registered in the server).
    MediaPipeline,
    /// ConversationRelay with the screening agent (needs `/relay`).
    Relay,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "media-echo" | "echo" => Ok(Self::MediaEcho),
            "media-pipeline" | "pipeline" => Ok(Self::MediaPipeline),
            "relay" => Ok(Self::Relay),
            other => Err(format!(
                "unknown mode {other:?}: use media-echo, media-pipeline or relay"
            )),
        }
    }
}

/// A load test.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The mode.
    pub mode: Mode,
    /// The signed WebSocket URL (`wss://host/media` or `wss://host/relay`).
    pub url: String,
    /// Where to dial it.
    pub route: Route,
    /// Auth token for `X-Twilio-Signature`.
    pub auth_token: Option<String>,
    /// `agent` custom parameter (Media Streams).
    pub agent: String,
    /// Concurrent calls.
    pub calls: usize,
    /// Time over which calls are started, evenly.
    pub ramp_up: Duration,
    /// Talk time of each call after it connects.
    pub duration: Duration,
    /// Media modes: the caller's utterance (mu-law 8 kHz), repeated each time the bot has
    /// answered.
    pub utterance: Arc<[u8]>,
    /// Relay mode: the caller's answers, cycled.
    pub answers: Vec<String>,
    /// Pause between the bot finishing and the caller speaking again.
    pub think: Duration,
    /// Relay: the `<Parameter>`s sent in `setup.customParameters`.
    pub relay_parameters: BTreeMap<String, String>,
    /// Server process to sample (`/proc/<pid>`).
    pub server_pid: Option<u32>,
    /// Draw a progress line on stderr.
    pub progress: bool,
}

/// Server or generator resource use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessUsage {
    /// CPU time over the steady-state window divided by its wall time (1.0 = one core).
    pub cpu_cores: f64,
    /// CPU per concurrent call, in percent of one core.
    pub cpu_percent_per_call: f64,
    /// Length of the steady-state window (all calls up) the CPU figures cover, in seconds;
    /// 0 when the run was too short to have one (`duration` must exceed `ramp_up` + 3 s).
    pub cpu_window_s: f64,
    /// RSS before the first call, KiB.
    pub rss_start_kib: u64,
    /// Peak RSS while calls were up, KiB.
    pub rss_peak_kib: u64,
    /// (peak - start) / calls, KiB.
    pub rss_per_call_kib: f64,
}

/// One second of a load test, for telling when things went wrong and who was busy then.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Seconds since the run started (end of this one-second window).
    pub t_s: u32,
    /// Calls connected and not yet ended.
    pub live: u64,
    /// Dropped frames counted in this second.
    pub dropped_frames: u64,
    /// Inbound frames the generator sent more than 20 ms late in this second.
    pub frames_sent_late: u64,
    /// The generator's worst send lateness in this second, ms: its own stalls.
    pub max_send_lateness_ms: f64,
    /// Server CPU in this second (cores), when its PID was given.
    pub server_cpu_cores: Option<f64>,
    /// Generator CPU in this second (cores).
    pub generator_cpu_cores: f64,
    /// How long the server's threads were ready to run but waited for a CPU in this second,
    /// ms (summed over threads, from `/proc/<pid>/task/*/schedstat`): a bridge pinned to a
    /// core that something else took. Normally a few ms.
    pub server_cpu_wait_ms: Option<f64>,
    /// The same for the generator.
    pub generator_cpu_wait_ms: Option<f64>,
    /// Server RSS at the end of this second, KiB, when its PID was given: the series a soak
    /// run reads for growth (`scripts/soak.sh`).
    pub server_rss_kib: Option<u64>,
}

/// A process's cumulative CPU use, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// utime + stime in `USER_HZ` ticks.
    ticks: u64,
    /// Time its threads spent runnable but not running, ns (`None`: no schedstats).
    wait_ns: Option<u64>,
    /// Resident set size, KiB.
    rss_kib: u64,
}

/// Summed run-queue wait of a process's threads (the second field of each task's
/// `schedstat`), ns.
fn run_queue_wait_ns(pid: Option<u32>) -> Option<u64> {
    let dir = proc_dir(pid);
    let mut total = 0u64;
    let mut any = false;
    for task in std::fs::read_dir(format!("{dir}/task")).ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(wait) = stat
            .split_whitespace()
            .nth(1)
            .and_then(|w| w.parse::<u64>().ok())
        {
            total += wait;
            any = true;
        }
    }
    any.then_some(total)
}

/// The previous sample, to turn cumulative counts into per-second figures.
#[derive(Debug, Default)]
struct Previous {
    at: Option<Instant>,
    server: Option<Cpu>,
    generator: Option<Cpu>,
    dropped: u64,
    late: u64,
}

impl Previous {
    fn second(
        &mut self,
        now: Instant,
        started: Instant,
        live: u64,
        recorder: &Recorder,
        server: Option<Cpu>,
        generator: Option<Cpu>,
    ) -> Option<Second> {
        let dropped = Recorder::get(&recorder.dropped_frames);
        let late = Recorder::get(&recorder.frames_sent_late);
        let worst = recorder
            .send_lateness_window_max_us
            .swap(0, Ordering::Relaxed);
        let wall = self
            .at
            .map(|at| now.duration_since(at).as_secs_f64().max(1e-3));
        let cores = |before: Option<Cpu>, after: Option<Cpu>| match (wall, before, after) {
            (Some(wall), Some(b), Some(a)) => {
                Some(a.ticks.saturating_sub(b.ticks) as f64 / TICKS_PER_SECOND / wall)
            }
            _ => None,
        };
        let waited = |before: Option<Cpu>, after: Option<Cpu>| {
            let (b, a) = (before?.wait_ns?, after?.wait_ns?);
            Some(a.saturating_sub(b) as f64 / 1e6)
        };
        let second = wall.map(|_| Second {
            t_s: u32::try_from(now.duration_since(started).as_secs_f64().round() as u64)
                .unwrap_or(u32::MAX),
            live,
            dropped_frames: dropped - self.dropped,
            frames_sent_late: late - self.late,
            max_send_lateness_ms: worst as f64 / 1000.0,
            server_cpu_cores: cores(self.server, server),
            generator_cpu_cores: cores(self.generator, generator).unwrap_or(0.0),
            server_cpu_wait_ms: waited(self.server, server),
            generator_cpu_wait_ms: waited(self.generator, generator),
            server_rss_kib: server.map(|s| s.rss_kib),
        });
        *self = Self {
            at: Some(now),
            server,
            generator,
            dropped,
            late,
        };
        second
    }
}

/// The result of a load test.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The mode.
    pub mode: Mode,
    /// Concurrent calls asked for.
    pub calls: usize,
    /// Ramp-up, seconds.
    pub ramp_up_s: f64,
    /// Talk time per call, seconds.
    pub duration_s: f64,
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// Most calls connected at once.
    pub peak_concurrent: u64,
    /// Counters.
    pub counters: BTreeMap<&'static str, u64>,
    /// Latencies in milliseconds.
    pub latency_ms: BTreeMap<&'static str, SummaryMs>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// The server, when its PID was given.
    pub server: Option<ProcessUsage>,
    /// The generator itself.
    pub generator: ProcessUsage,
    /// Second by second: drops, the generator's stalls, both processes' CPU.
    pub timeline: Vec<Second>,
}

/// A latency summary in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SummaryMs {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl From<Summary> for SummaryMs {
    fn from(s: Summary) -> Self {
        Self {
            count: s.count,
            mean: s.mean / 1000.0,
            p50: s.p50 as f64 / 1000.0,
            p95: s.p95 as f64 / 1000.0,
            p99: s.p99 as f64 / 1000.0,
            max: s.max as f64 / 1000.0,
        }
    }
}

/// `/proc/<pid>`, or `/proc/self` for this process.
fn proc_dir(pid: Option<u32>) -> String {
    pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"))
}

/// CPU ticks (utime + stime, in `USER_HZ` = 100/s) and RSS (KiB) of a process from `/proc`.
pub fn proc_sample(pid: Option<u32>) -> Option<(u64, u64)> {
    let dir = proc_dir(pid);
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((ticks, rss))
}

/// `USER_HZ`: `/proc` reports CPU time in 1/100 s on every Linux architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Samples a process once a second: CPU ticks at the start and end of the steady state and
/// the RSS peak.
#[derive(Debug, Default)]
struct Sampler {
    start: Option<(u64, u64)>,
    steady: Option<(Instant, u64)>,
    end: Option<(Instant, u64)>,
    peak_rss: u64,
}

impl Sampler {
    fn sample(
        &mut self,
        pid: Option<u32>,
        now: Instant,
        steady_from: Instant,
        steady_to: Instant,
    ) -> Option<Cpu> {
        let (ticks, rss) = proc_sample(pid)?;
        self.peak_rss = self.peak_rss.max(rss);
        if now >= steady_from && self.steady.is_none() {
            self.steady = Some((now, ticks));
        }
        if self.steady.is_some() && (now <= steady_to || self.end.is_none()) {
            self.end = Some((now, ticks));
        }
        Some(Cpu {
            ticks,
            wait_ns: run_queue_wait_ns(pid),
            rss_kib: rss,
        })
    }

    fn usage(&self, calls: usize) -> ProcessUsage {
        let (cpu_cores, cpu_window_s, rss_start) = match (self.start, self.steady, self.end) {
            (Some((_, rss)), Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                let wall = t1.duration_since(t0).as_secs_f64();
                (
                    (c1.saturating_sub(c0)) as f64 / TICKS_PER_SECOND / wall,
                    wall,
                    rss,
                )
            }
            (Some((_, rss)), _, _) => (0.0, 0.0, rss),
            _ => (0.0, 0.0, 0),
        };
        let calls = calls.max(1) as f64;
        ProcessUsage {
            cpu_cores,
            cpu_percent_per_call: 100.0 * cpu_cores / calls,
            cpu_window_s,
            rss_start_kib: rss_start,
            rss_peak_kib: self.peak_rss,
            rss_per_call_kib: self.peak_rss.saturating_sub(rss_start) as f64 / calls,
        }
    }
}

fn media_steps(config: &LoadConfig, offset: Duration) -> Arc<[Step]> {
    // Enough turns to fill the talk time; the call hangs up at `duration` anyway.
    let cycle = Duration::from_millis(config.utterance.len() as u64 / 8 * 2 + 1500) + config.think;
    let turns = (config.duration.as_millis() / cycle.as_millis().max(1)) as usize + 2;
    let say = Action::Say {
        text: "(utterance)".to_owned(),
        audio: Some(config.utterance.clone()),
    };
    let mut steps = vec![Step {
        trigger: Trigger::Start,
        delay_us: u64::try_from(offset.as_micros()).unwrap_or(0),
        action: say.clone(),
    }];
    steps.extend((0..turns).map(|_| Step {
        trigger: Trigger::BotDone,
        delay_us: u64::try_from(config.think.as_micros()).unwrap_or(0),
        action: say.clone(),
    }));
    steps.into()
}

fn relay_steps(config: &LoadConfig) -> Arc<[Step]> {
    let think = u64::try_from(config.think.as_micros()).unwrap_or(0);
    let mut answers = config.answers.iter().cycle();
    let turns = (config.duration.as_secs() as usize + 1) * 4;
    (0..turns)
        .filter_map(|_| answers.next())
        .map(|text| Step {
            trigger: Trigger::BotDone,
            delay_us: think,
            action: Action::Say {
                text: text.clone(),
                audio: None,
            },
        })
        .collect()
}

async fn one_call(
    config: Arc<LoadConfig>,
    index: usize,
    recorder: Arc<Recorder>,
    cancel: CancellationToken,
) {
    let n = index as u64 + 1;
    let account = AccountSid::new(format!("AC{:032x}", 7)).expect("AC + 32 hex is a SID");
    let call_sid = format!("CA{:016x}{n:016x}", u64::from(std::process::id()));
    let tap = TranscriptTap::none();
    match config.mode {
        Mode::MediaEcho | Mode::MediaPipeline => {
            // Spread the callers' first words over a second so turns do not align.
            let offset = Duration::from_millis(200 + (n * 37) % 1000);
            let call = MediaCall {
                url: config.url.clone(),
                route: config.route.clone(),
                auth_token: config.auth_token.clone(),
                account_sid: account,
                call_sid: CallSid::new(call_sid).expect("CA + 32 hex is a SID"),
                stream_sid: StreamSid::new(format!(
                    "MZ{:016x}{n:016x}",
                    u64::from(std::process::id())
                ))
                .expect("MZ + 32 hex is a SID"),
                parameters: BTreeMap::from([("agent".to_owned(), config.agent.clone())]),
                steps: media_steps(&config, offset),
                options: MediaCallOptions {
                    hangup_at: Some(config.duration),
                    max_duration: config.duration + Duration::from_secs(30),
                    // Count what the bridge sent up to the hang-up, so `media_received` can be
                    // held against the bridge's own count of frames sent.
                    drain_after_hangup: Some(Duration::from_secs(5)),
                    ..MediaCallOptions::default()
                },
            };
            let _ = run_media_call(&call, &recorder, &tap, &cancel).await;
        }
        Mode::Relay => {
            let call = RelayCall {
                url: config.url.clone(),
                route: config.route.clone(),
                auth_token: config.auth_token.clone(),
                setup: setup_message(
                    &format!("VX{n:032x}"),
                    account.as_str(),
                    &call_sid,
                    "+14155550100",
                    &format!("+1415555{:04}", n % 10_000),
                    &config.relay_parameters,
                ),
                welcome_greeting: None,
                steps: relay_steps(&config),
                options: RelayCallOptions {
                    hangup_at: Some(config.duration),
                    max_duration: config.duration + Duration::from_secs(30),
                    ..RelayCallOptions::instant()
                },
            };
            let _ = run_relay_call(&call, &recorder, &tap, &cancel).await;
        }
    }
}

fn progress_line(recorder: &Recorder, calls: usize, elapsed: Duration) -> String {
    let connected = Recorder::get(&recorder.calls_connected);
    let ended = Recorder::get(&recorder.calls_completed) + Recorder::get(&recorder.calls_failed);
    let live = connected
        .saturating_sub(Recorder::get(&recorder.calls_completed))
        .saturating_sub(Recorder::get(&recorder.calls_failed).min(connected));
    let width = 30;
    let done = (ended as usize * width / calls.max(1)).min(width);
    let up = ((connected as usize).saturating_sub(ended as usize) * width / calls.max(1))
        .min(width - done);
    let mut bar = String::with_capacity(width + 2);
    bar.push('[');
    bar.extend(std::iter::repeat_n('#', done));
    bar.extend(std::iter::repeat_n('=', up));
    bar.extend(std::iter::repeat_n(' ', width - done - up));
    bar.push(']');
    let errors: u64 = recorder.errors().values().sum();
    format!(
        "\r{bar} {:>5.1}s live {live:>5} done {ended:>5}/{calls} frames {:>9} late {:>5} errors {errors}   ",
        elapsed.as_secs_f64(),
        Recorder::get(&recorder.frames_sent),
        Recorder::get(&recorder.frames_sent_late),
    )
}

/// When call `index` is placed, after the run starts: evenly over the ramp-up, plus a phase
/// within the 20 ms frame. Independent callers' frames fall anywhere in the frame period;
/// without the phase, a ramp that is a multiple of 20 ms per call (20 s for 1,000 calls) would
/// line every call's frames up on the same millisecond and both sides would see 1,000 frames
/// at once every 20 ms, a load no real set of callers produces.
fn launch_offset(config: &LoadConfig, index: usize) -> Duration {
    let calls = config.calls.max(1) as f64;
    let even = config.ramp_up.mul_f64(index as f64 / calls);
    // The golden-ratio sequence spreads any number of calls evenly over the frame.
    let phase = (index as f64 * 0.618_033_988_749_895).fract();
    even + Duration::from_micros(FRAME_US).mul_f64(phase)
}

/// Runs the load test to completion; returns the report and the raw measurements.
pub async fn run(config: LoadConfig) -> (LoadReport, Arc<Recorder>) {
    let config = Arc::new(config);
    let recorder = Arc::new(Recorder::new());
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let mut server = Sampler {
        start: proc_sample(config.server_pid),
        ..Sampler::default()
    };
    let mut generator = Sampler {
        start: proc_sample(None),
        ..Sampler::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    // Launch calls evenly over the ramp-up, sampling and drawing progress meanwhile.
    let launcher = {
        let config = config.clone();
        let recorder = recorder.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            // In launch order: with less than a frame between calls, a phase can put a call
            // before the one ahead of it.
            let mut order: Vec<(Duration, usize)> = (0..config.calls)
                .map(|index| (launch_offset(&config, index), index))
                .collect();
            order.sort_unstable();
            for (offset, index) in order {
                tokio::time::sleep_until(started + offset).await;
                set.spawn(one_call(
                    config.clone(),
                    index,
                    recorder.clone(),
                    cancel.clone(),
                ));
            }
            while set.join_next().await.is_some() {}
        })
    };
    tasks.spawn(async move {
        let _ = launcher.await;
    });
    // Steady state: all calls launched and connected, until the first call's talk time ends.
    let steady_from = started + config.ramp_up + Duration::from_secs(2);
    let steady_to = started + config.duration.max(Duration::from_secs(4)) - Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // After a stall, sample a second later rather than catching up with back-to-back samples
    // over a few milliseconds (per-second CPU figures over such a window are noise).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0u64;
    let mut timeline = Vec::new();
    let mut previous = Previous::default();
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let live = Recorder::get(&recorder.calls_connected)
                    .saturating_sub(Recorder::get(&recorder.calls_completed) + Recorder::get(&recorder.calls_failed));
                peak = peak.max(live);
                let server_cpu = config
                    .server_pid
                    .and_then(|pid| server.sample(Some(pid), now, steady_from, steady_to));
                let generator_cpu = generator.sample(None, now, steady_from, steady_to);
                timeline.extend(previous.second(now, started, live, &recorder, server_cpu, generator_cpu));
                if config.progress {
                    let _ = write!(stderr, "{}", progress_line(&recorder, config.calls, started.elapsed()));
                    let _ = stderr.flush();
                }
            }
            done = tasks.join_next() => {
                if done.is_none() {
                    break;
                }
            }
        }
    }
    if config.progress {
        let _ = writeln!(
            stderr,
            "{}",
            progress_line(&recorder, config.calls, started.elapsed())
        );
    }
    let mut report = build_report(&config, &recorder, started, peak, &server, &generator);
    report.timeline = timeline;
    (report, recorder)
}

fn build_report(
    config: &LoadConfig,
    recorder: &Recorder,
    started: Instant,
    peak: u64,
    server: &Sampler,
    generator: &Sampler,
) -> LoadReport {
    let counters = BTreeMap::from([
        ("calls_started", Recorder::get(&recorder.calls_started)),
        ("calls_connected", Recorder::get(&recorder.calls_connected)),
        ("calls_completed", Recorder::get(&recorder.calls_completed)),
        ("calls_failed", Recorder::get(&recorder.calls_failed)),
        ("frames_sent", Recorder::get(&recorder.frames_sent)),
        (
            "frames_sent_late",
            Recorder::get(&recorder.frames_sent_late),
        ),
        ("media_received", Recorder::get(&recorder.media_received)),
        (
            "media_after_hangup",
            Recorder::get(&recorder.media_after_hangup),
        ),
        ("dropped_frames", Recorder::get(&recorder.dropped_frames)),
        ("marks_echoed", Recorder::get(&recorder.marks_echoed)),
        ("clears", Recorder::get(&recorder.clears)),
        ("tokens_received", Recorder::get(&recorder.tokens_received)),
    ]);
    let latency_ms = BTreeMap::from([
        ("connect", recorder.connect_us.summary().into()),
        ("first_audio", recorder.first_audio_us.summary().into()),
        ("turn_latency", recorder.turn_latency_us.summary().into()),
        ("first_token", recorder.first_token_us.summary().into()),
        (
            "playout_lateness",
            recorder.playout_lateness_us.summary().into(),
        ),
        ("barge_in", recorder.barge_in_us.summary().into()),
        ("send_lateness", recorder.send_lateness_us.summary().into()),
    ]);
    LoadReport {
        mode: config.mode,
        calls: config.calls,
        ramp_up_s: config.ramp_up.as_secs_f64(),
        duration_s: config.duration.as_secs_f64(),
        wall_s: started.elapsed().as_secs_f64(),
        peak_concurrent: peak,
        counters,
        latency_ms,
        errors: recorder.errors(),
        server: config.server_pid.map(|_| server.usage(config.calls)),
        generator: generator.usage(config.calls),
        timeline: Vec::new(),
    }
}

/// The histogram image for a finished run (the panels that matter for its mode).
pub fn histogram_svg(report: &LoadReport, recorder: &Recorder) -> String {
    let title = format!(
        "voxbridge loadtest: {:?}, {} calls",
        report.mode, report.calls
    );
    match report.mode {
        Mode::Relay => svg(
            &title,
            &[
                Panel {
                    title: "prompt -> first token",
                    histogram: &recorder.first_token_us,
                },
                Panel {
                    title: "connect",
                    histogram: &recorder.connect_us,
                },
            ],
        ),
        _ => svg(
            &title,
            &[
                Panel {
                    title: "outbound playout lateness",
                    histogram: &recorder.playout_lateness_us,
                },
                Panel {
                    title: "turn latency (end of utterance -> first bot audio)",
                    histogram: &recorder.turn_latency_us,
                },
                Panel {
                    title: "inbound frame send lateness (generator)",
                    histogram: &recorder.send_lateness_us,
                },
            ],
        ),
    }
}

/// CPU figures as `figures` words them, or why there are none (no steady-state window).
fn cpu_text(usage: &ProcessUsage, figures: impl FnOnce(&ProcessUsage) -> String) -> String {
    if usage.cpu_window_s > 0.0 {
        figures(usage)
    } else {
        "CPU n/a (no steady-state window: make --duration exceed --ramp-up + 3 s)".to_owned()
    }
}

/// A human summary of the report.
pub fn render_text(report: &LoadReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mode {:?}: {} calls, ramp-up {:.0} s, talk time {:.0} s, wall {:.1} s, peak concurrent {}",
        report.mode,
        report.calls,
        report.ramp_up_s,
        report.duration_s,
        report.wall_s,
        report.peak_concurrent
    );
    for (name, value) in &report.counters {
        let _ = writeln!(out, "  {name:<18} {value}");
    }
    let _ = writeln!(
        out,
        "  latency (ms)        count      p50      p95      p99      max"
    );
    for (name, s) in &report.latency_ms {
        if s.count > 0 {
            let _ = writeln!(
                out,
                "  {name:<18} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                s.count, s.p50, s.p95, s.p99, s.max
            );
        }
    }
    if let Some(server) = &report.server {
        let cpu = cpu_text(server, |u| {
            format!(
                "{:.3} cores = {:.4}% of a core per call",
                u.cpu_cores, u.cpu_percent_per_call
            )
        });
        let _ = writeln!(
            out,
            "  server: {cpu}; RSS {} -> peak {} KiB = {:.1} KiB per call",
            server.rss_start_kib, server.rss_peak_kib, server.rss_per_call_kib
        );
    }
    let g = &report.generator;
    let cpu = cpu_text(g, |u| {
        format!(
            "{:.3} cores ({:.4}% per call)",
            u.cpu_cores, u.cpu_percent_per_call
        )
    });
    let _ = writeln!(out, "  generator: {cpu}, RSS peak {} KiB", g.rss_peak_kib);
    for (kind, count) in &report.errors {
        let _ = writeln!(out, "  error x{count}: {kind}");
    }
    let bad: Vec<&Second> = report
        .timeline
        .iter()
        .filter(|s| s.dropped_frames > 0)
        .collect();
    if !bad.is_empty() {
        let _ = writeln!(
            out,
            "  seconds with dropped frames ({}): t_s, dropped, generator worst send lateness ms, server cores (CPU wait ms), generator cores (CPU wait ms)",
            bad.len()
        );
        for s in bad.iter().take(12) {
            let opt = |v: Option<f64>, digits: usize| {
                v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                out,
                "    {:>4} {:>6} {:>7.1}   {} ({})   {:.2} ({})",
                s.t_s,
                s.dropped_frames,
                s.max_send_lateness_ms,
                opt(s.server_cpu_cores, 2),
                opt(s.server_cpu_wait_ms, 0),
                s.generator_cpu_cores,
                opt(s.generator_cpu_wait_ms, 0),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::us;

    #[test]
    fn modes_parse_by_name() {
        assert_eq!("media-echo".parse::<Mode>().unwrap(), Mode::MediaEcho);
        assert_eq!("relay".parse::<Mode>().unwrap(), Mode::Relay);
        assert!("video".parse::<Mode>().is_err());
    }

    #[test]
    fn calls_are_spread_over_the_ramp_and_the_frame() {
        let config = LoadConfig {
            mode: Mode::MediaEcho,
            url: "wss://h/media".to_owned(),
            route: Route::default(),
            auth_token: None,
            agent: "echo".to_owned(),
            calls: 1000,
            ramp_up: Duration::from_secs(20),
            duration: Duration::from_secs(60),
            utterance: Arc::from(Vec::new()),
            answers: Vec::new(),
            think: Duration::ZERO,
            relay_parameters: BTreeMap::new(),
            server_pid: None,
            progress: false,
        };
        let offsets: Vec<u64> = (0..config.calls)
            .map(|i| us(launch_offset(&config, i)))
            .collect();
        assert_eq!(offsets[0], 0);
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "placed in order");
        assert!(*offsets.last().unwrap() < 20_020_000);
        // Phases within the 20 ms frame: every 1 ms slot holds 50 +- 10 of the 1,000 calls
        // (the ramp alone would put all 1,000 in slot 0).
        let mut slots = [0u32; 20];
        for offset in &offsets {
            slots[(offset % FRAME_US / 1000) as usize] += 1;
        }
        assert!(slots.iter().all(|&n| (40..=60).contains(&n)), "{slots:?}");
    }

    fn cpu(ticks: u64, wait_ns: u64) -> Cpu {
        Cpu {
            ticks,
            wait_ns: Some(wait_ns),
            rss_kib: 10_000 + ticks,
        }
    }

    #[test]
    fn timeline_turns_cumulative_counts_into_seconds() {
        let recorder = Recorder::new();
        let started = Instant::now();
        let mut previous = Previous::default();
        // The first sample has nothing to compare with.
        assert!(
            previous
                .second(
                    started,
                    started,
                    0,
                    &recorder,
                    Some(cpu(100, 5)),
                    Some(cpu(50, 0))
                )
                .is_none()
        );
        recorder.dropped_frames.fetch_add(3, Ordering::Relaxed);
        recorder.frames_sent_late.fetch_add(7, Ordering::Relaxed);
        recorder
            .send_lateness_window_max_us
            .fetch_max(25_000, Ordering::Relaxed);
        let at = started + Duration::from_secs(2);
        let second = previous
            .second(
                at,
                started,
                10,
                &recorder,
                Some(cpu(280, 125_000_005)),
                Some(cpu(90, 0)),
            )
            .expect("a second sample makes a second");
        assert_eq!(second.t_s, 2);
        assert_eq!(
            (second.live, second.dropped_frames, second.frames_sent_late),
            (10, 3, 7)
        );
        assert!((second.max_send_lateness_ms - 25.0).abs() < 1e-9);
        // 180 ticks of 1/100 s over 2 s = 0.9 cores; 40 ticks = 0.2 cores.
        assert!((second.server_cpu_cores.unwrap() - 0.9).abs() < 1e-9);
        assert!((second.generator_cpu_cores - 0.2).abs() < 1e-9);
        // 125 ms of the server's threads waiting for a CPU.
        assert!((second.server_cpu_wait_ms.unwrap() - 125.0).abs() < 1e-9);
        assert_eq!(second.generator_cpu_wait_ms, Some(0.0));
        // The server's RSS at the end of the second.
        assert_eq!(second.server_rss_kib, Some(10_280));
        // The window maximum starts again; counts are deltas.
        let next = previous
            .second(
                at + Duration::from_secs(1),
                started,
                10,
                &recorder,
                None,
                Some(cpu(90, 0)),
            )
            .unwrap();
        assert_eq!((next.dropped_frames, next.frames_sent_late), (0, 0));
        assert!(next.max_send_lateness_ms.abs() < 1e-9);
        assert_eq!(next.server_cpu_cores, None);
        assert_eq!(next.server_rss_kib, None);
    }

    #[test]
    fn run_queue_wait_is_read_for_this_process() {
        // Linux with schedstats: every task has one. (Not monotonic here: the test
        // harness's threads come and go, taking their share of the sum with them.)
        assert!(
            run_queue_wait_ns(None).is_some(),
            "/proc/self/task/*/schedstat"
        );
        assert!(run_queue_wait_ns(Some(u32::MAX)).is_none());
    }

    #[test]
    fn cpu_is_measured_over_the_steady_window_and_not_without_one() {
        let t0 = Instant::now();
        let mut sampler = Sampler {
            start: Some((0, 10_000)),
            steady: Some((t0, 100)),
            end: Some((t0 + Duration::from_secs(10), 600)),
            peak_rss: 20_000,
        };
        // 500 ticks (5 s of CPU) in 10 s = 0.5 cores = 0.5% of a core for each of 100 calls.
        let usage = sampler.usage(100);
        assert!((usage.cpu_cores - 0.5).abs() < 1e-9);
        assert!((usage.cpu_percent_per_call - 0.5).abs() < 1e-9);
        assert!((usage.cpu_window_s - 10.0).abs() < 1e-9);
        assert!((usage.rss_per_call_kib - 100.0).abs() < 1e-9);

        // A run too short for a steady state: one sample opens and closes the window.
        sampler.end = sampler.steady;
        let usage = sampler.usage(100);
        assert!(usage.cpu_window_s.abs() < f64::EPSILON);
        assert!(usage.cpu_cores.abs() < f64::EPSILON);
    }

    #[test]
    fn proc_sample_reads_this_process() {
        let (ticks, rss) = proc_sample(None).expect("/proc/self is readable on Linux");
        assert!(rss > 0);
        let _ = ticks;
        assert!(proc_sample(Some(u32::MAX)).is_none());
    }
}
