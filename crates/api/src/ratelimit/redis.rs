//! Redis backend, shared by every instance. One decision is one `EVALSHA` round trip: a Lua
//! script trims the number's sorted set of allowed-call times to the window, counts it, adds
//! `now` if there is room, bumps the stats hash, and sets both keys to expire with the window
//! (<https://redis.io/docs/latest/develop/interact/programmability/eval-intro/>). The script
//! runs atomically, so instances never over-admit. The keys share a `{number}` hash tag, so the
//! script also works on Redis Cluster.
//!
//! `now` comes from the caller (the instances' clocks must roughly agree, as with NTP).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::sync::Mutex;

use super::{Decision, LimiterError, NumberStats, SlidingWindow};

const DECIDE: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < max then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('HSET', KEYS[2], 'last_allowed', now)
  redis.call('HINCRBY', KEYS[2], 'total_allowed', 1)
  count = count + 1
  allowed = 1
else
  redis.call('HINCRBY', KEYS[2], 'total_blocked', 1)
end
redis.call('PEXPIRE', KEYS[1], window)
redis.call('PEXPIRE', KEYS[2], window)
return {allowed, count}
";

const STATS: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local times = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - window), '+inf', 'WITHSCORES')
local out = {}
for i = 2, #times, 2 do table.insert(out, tonumber(times[i])) end
local h = redis.call('HMGET', KEYS[2], 'last_allowed', 'total_allowed', 'total_blocked')
return {out, h[1], h[2], h[3]}
";

/// The stats script's reply: recent times, last allowed, totals.
type StatsReply = (Vec<i64>, Option<i64>, Option<u64>, Option<u64>);

/// Rate-limit state in Redis. Connects lazily and reconnects after an error, so a Redis that
/// is down at start-up or goes away later only makes decisions fail (and the caller fail open).
#[derive(Debug, Clone)]
pub struct RedisLimiter {
    rule: SlidingWindow,
    client: Client,
    prefix: String,
    timeout: Duration,
    connection: Arc<Mutex<Option<MultiplexedConnection>>>,
    decide: Arc<Script>,
    stats: Arc<Script>,
    nonce: String,
    counter: Arc<AtomicU64>,
}

impl RedisLimiter {
    /// A limiter on `url` with keys under `prefix`; each decision waits at most `timeout`.
    pub fn new(
        rule: SlidingWindow,
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, LimiterError> {
        let nonce = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        Ok(Self {
            rule,
            client: Client::open(url)?,
            prefix: prefix.to_owned(),
            timeout,
            connection: Arc::new(Mutex::new(None)),
            decide: Arc::new(Script::new(DECIDE)),
            stats: Arc::new(Script::new(STATS)),
            nonce,
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The rule in force.
    pub fn window(&self) -> SlidingWindow {
        self.rule
    }

    fn keys(&self, key: &str) -> (String, String) {
        (
            format!("{}{{{key}}}", self.prefix),
            format!("{}{{{key}}}:stats", self.prefix),
        )
    }

    async fn connection(&self) -> Result<MultiplexedConnection, LimiterError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn reset(&self) {
        *self.connection.lock().await = None;
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, LimiterError>>,
    ) -> Result<T, LimiterError> {
        let timed_out =
            || LimiterError::Timeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        let result = match tokio::time::timeout(self.timeout, work).await {
            // The client's own connection/response timeout (the same figure) may fire first:
            // it is the same event, reported the same way.
            Ok(Err(LimiterError::Redis(e))) if e.is_timeout() => Err(timed_out()),
            Ok(result) => result,
            Err(_) => Err(timed_out()),
        };
        if result.is_err() {
            self.reset().await;
        }
        result
    }

    /// Decides a call from `key` at `now_ms` in one round trip.
    pub async fn check(&self, key: &str, now_ms: i64) -> Result<Decision, LimiterError> {
        let (set, stats) = self.keys(key);
        let member = format!(
            "{now_ms}-{}-{}",
            self.nonce,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let (allowed, count): (i64, i64) = self
            .bounded(async {
                let mut connection = self.connection().await?;
                Ok(self
                    .decide
                    .key(&set)
                    .key(&stats)
                    .arg(now_ms)
                    .arg(self.rule.window_ms)
                    .arg(self.rule.max_calls)
                    .arg(&member)
                    .invoke_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            count: u32::try_from(count)
                .map_err(|_| LimiterError::Reply(format!("count {count}")))?,
            limit: self.rule.max_calls,
        })
    }

    /// The state of `key` at `now_ms`.
    pub async fn stats(&self, key: &str, now_ms: i64) -> Result<NumberStats, LimiterError> {
        let (set, stats) = self.keys(key);
        let (recent, last_allowed, total_allowed, total_blocked): StatsReply = self
            .bounded(async {
                let mut connection = self.connection().await?;
                Ok(self
                    .stats
                    .key(&set)
                    .key(&stats)
                    .arg(now_ms)
                    .arg(self.rule.window_ms)
                    .invoke_async(&mut connection)
                    .await?)
            })
            .await?;
        Ok(NumberStats {
            recent,
            last_allowed,
            total_allowed: total_allowed.unwrap_or(0),
            total_blocked: total_blocked.unwrap_or(0),
        })
    }
}
