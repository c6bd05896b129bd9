//! Process metrics under their conventional Prometheus names, read from `/proc/self` at each
//! scrape (Linux; elsewhere the family list is empty), and `voxbridge_build_info`.
//!
//! | series | from |
//! |---|---|
//! | `process_cpu_seconds_total` | `utime + stime` in `/proc/self/stat`, at `USER_HZ` = 100 |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes` | `VmRSS`, `VmSize` in `/proc/self/status` |
//! | `process_threads` | `Threads` in `/proc/self/status` |
//! | `process_open_fds`, `process_max_fds` | entries of `/proc/self/fd`; soft `Max open files` in `/proc/self/limits` |
//! | `process_start_time_seconds` | `btime` in `/proc/stat` + `starttime` in `/proc/self/stat` |

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::Series;

/// The kernel's clock tick for `/proc` times (`USER_HZ`), 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// Registers the process metrics and `voxbridge_build_info{version}` (always 1) in `registry`.
pub fn register_process(registry: &mut Registry) {
    let info = Gauge::<i64>::default();
    info.set(1);
    registry.register(
        "voxbridge_build_info",
        "The running build: its version as a label, value 1",
        Series::new([(vec![("version", env!("CARGO_PKG_VERSION"))], info)]),
    );
    registry.register_collector(Box::new(ProcessCollector));
}

/// One scrape's reading of `/proc`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    open_fds: i64,
    max_fds: i64,
    start_time_seconds: f64,
}

#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(r) = read_proc() else {
            return Ok(());
        };
        ConstCounter::new(r.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, i64); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                r.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                r.virtual_bytes,
            ),
            ("process_threads", "Number of OS threads", r.threads),
            (
                "process_open_fds",
                "Number of open file descriptors",
                r.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                r.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        ConstGauge::new(r.start_time_seconds).encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            MetricType::Gauge,
        )?)
    }
}

fn read_proc() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    parse(&stat, &status, &limits, &system, open_fds)
}

/// The reading from the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits`
/// and `/proc/stat`, and the number of entries in `/proc/self/fd`.
fn parse(stat: &str, status: &str, limits: &str, system: &str, fds: usize) -> Option<Reading> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')'; `after[0]` is field 3 (state).
    let after: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Option<f64> { after.get(n - 3)?.parse().ok() };
    let kib = |key: &str| -> Option<i64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let value: i64 = line
            .get(key.len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(value * 1024)
    };
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(-1);
    let boot: f64 = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(Reading {
        cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
        resident_bytes: kib("VmRSS:")?,
        virtual_bytes: kib("VmSize:")?,
        threads,
        open_fds: i64::try_from(fds).unwrap_or(i64::MAX),
        max_fds,
        start_time_seconds: boot + field(22)? / USER_HZ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (voxbridge (x) y) S 1 4242 4242 0 -1 4194560 2530 0 0 0 \
        1234 567 0 0 20 0 9 0 98765 1073741824 5000 18446744073709551615";
    const STATUS: &str =
        "Name:\tvoxbridge\nVmSize:\t 1048576 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
        Max open files            1024                 524288               files\n";
    const SYSTEM: &str = "cpu  1 2 3\nbtime 1764800000\nprocesses 5\n";

    #[test]
    fn parses_proc_texts_with_odd_command_names() {
        let r = parse(STAT, STATUS, LIMITS, SYSTEM, 17).unwrap();
        assert_eq!(
            r,
            Reading {
                cpu_seconds: 18.01,
                resident_bytes: 20_480 * 1024,
                virtual_bytes: 1_048_576 * 1024,
                threads: 9,
                open_fds: 17,
                max_fds: 1024,
                start_time_seconds: 1_764_800_000.0 + 987.65,
            }
        );
        assert_eq!(parse("garbage", STATUS, LIMITS, SYSTEM, 1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_exposed_under_the_conventional_names() {
        let mut registry = Registry::default();
        register_process(&mut registry);
        let body = crate::Format::PrometheusText.encode(&registry);
        let value = |name: &str| -> f64 {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
                .parse()
                .unwrap()
        };
        let info = format!(
            "voxbridge_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(body.lines().any(|l| l == info), "{info}:\n{body}");
        assert!(
            value("process_resident_memory_bytes") > 1_000_000.0,
            "{body}"
        );
        assert!(value("process_open_fds") >= 3.0, "{body}");
        assert!(value("process_threads") >= 1.0, "{body}");
        assert!(value("process_cpu_seconds_total") >= 0.0, "{body}");
        let started = value("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(
            body.contains("# TYPE process_cpu_seconds_total counter"),
            "{body}"
        );
    }
}
