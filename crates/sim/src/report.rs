//! Load-test reports: a JSON document and a latency histogram drawn as SVG by hand (no
//! plotting dependency).

use std::fmt::Write as _;

use crate::stats::Histogram;

/// One panel of the histogram image.
#[derive(Debug)]
pub struct Panel<'a> {
    /// Title above the panel.
    pub title: &'a str,
    /// The data (microseconds).
    pub histogram: &'a Histogram,
}

const WIDTH: f64 = 760.0;
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn label_ms(us: f64) -> String {
    let ms = us / 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Renders the panels as one SVG: per panel, log-scaled latency (ms) on x, the share of
/// samples on y, and p50/p95/p99 marked.
pub fn svg(title: &str, panels: &[Panel<'_>]) -> String {
    let height = 40.0 + PANEL_HEIGHT * panels.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, panel) in panels.iter().enumerate() {
        let top = 40.0 + PANEL_HEIGHT * i as f64;
        draw_panel(&mut out, panel, top);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel<'_>, top: f64) {
    let plot_top = top + 22.0;
    let plot_bottom = top + PANEL_HEIGHT - 36.0;
    let plot_height = plot_bottom - plot_top;
    let plot_width = WIDTH - LEFT - RIGHT;
    let summary = panel.histogram.summary();
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{} (n={}, p50 {} ms, p95 {} ms, p99 {} ms, max {} ms)</text>"#,
        top + 14.0,
        escape(panel.title),
        summary.count,
        label_ms(summary.p50 as f64),
        label_ms(summary.p95 as f64),
        label_ms(summary.p99 as f64),
        label_ms(summary.max as f64),
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{plot_top}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#999"/>"##
    );
    let buckets = panel.histogram.buckets();
    if buckets.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">no samples</text>"#,
            LEFT + 10.0,
            plot_top + 20.0
        );
        return;
    }
    // x: log10 of (value + 1 us), over a range of whole decades.
    let lo = 0.0_f64;
    let hi = ((summary.max as f64 + 1.0).log10().ceil()).max(1.0);
    let x = |us: f64| LEFT + plot_width * (((us + 1.0).log10() - lo) / (hi - lo));
    // Group buckets into 100 columns.
    let columns = 100usize;
    let mut counts = vec![0u64; columns];
    for &(floor, count) in &buckets {
        let position = ((floor as f64 + 1.0).log10() - lo) / (hi - lo);
        let column = ((position * columns as f64) as usize).min(columns - 1);
        counts[column] += count;
    }
    let total = summary.count.max(1) as f64;
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let column_width = plot_width / columns as f64;
    for (column, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let h = plot_height * count as f64 / peak;
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7fb5"><title>{:.2}% of samples</title></rect>"##,
            LEFT + column_width * column as f64,
            plot_bottom - h,
            column_width.max(1.0) - 0.5,
            h,
            100.0 * count as f64 / total
        );
    }
    for (name, value, color) in [
        ("p50", summary.p50, "#2a2"),
        ("p95", summary.p95, "#e80"),
        ("p99", summary.p99, "#d22"),
    ] {
        let px = x(value as f64);
        let _ = writeln!(
            out,
            r#"<line x1="{px:.1}" y1="{plot_top}" x2="{px:.1}" y2="{plot_bottom}" stroke="{color}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="{color}">{name}</text>"#,
            px + 3.0,
            plot_top + 12.0
        );
    }
    // Decade ticks.
    let mut decade = 0;
    while f64::from(decade) <= hi {
        let us = 10f64.powi(decade);
        let px = x(us - 1.0);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{plot_bottom}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            plot_bottom + 4.0,
            px,
            plot_bottom + 16.0,
            label_ms(us)
        );
        decade += 1;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency (ms, log scale)</text>"#,
        LEFT + plot_width / 2.0,
        plot_bottom + 30.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_panel_per_histogram_and_marks_percentiles() {
        let a = Histogram::new();
        for v in 0..1000 {
            a.record(v * 37);
        }
        let b = Histogram::new();
        let image = svg(
            "load <test>",
            &[
                Panel {
                    title: "turn latency",
                    histogram: &a,
                },
                Panel {
                    title: "empty",
                    histogram: &b,
                },
            ],
        );
        assert!(image.starts_with("<svg"));
        assert!(image.trim_end().ends_with("</svg>"));
        assert!(image.contains("load &lt;test&gt;"));
        assert!(image.contains("turn latency (n=1000"));
        assert!(image.contains(">p99<"));
        assert!(image.contains("no samples"));
        assert!(image.matches("<rect").count() > 10);
    }
}
