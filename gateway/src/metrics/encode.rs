//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per family, then its
//! samples; label values escaped (`\\`, `\"`, `\n`), help text escaped (`\\`, `\n`); histograms as cumulative
//! `_bucket{le=…}` samples ending with `+Inf`, then `_sum` and `_count`.

use std::fmt::{Display, Write as _};

use super::histogram::Snapshot;

/// `Content-Type` of [`Exposition::finish`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition. Call [`Exposition::family`] before the samples of each metric family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition {
            out: String::with_capacity(8 << 10),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Snapshot) {
        for (le, n) in &h.buckets {
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le.to_string()));
            let _ = writeln!(self.out, " {n}");
        }
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.sum);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", h.count);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (k, v)) in all.enumerate() {
            debug_assert!(valid_name(k), "label name {k:?}");
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family(
            "x_total",
            Kind::Counter,
            "Things, with a \\ and a\nnewline.",
        );
        e.sample(
            "x_total",
            &[("route", "a\"b\\c\nd"), ("m", "tools/call")],
            3,
        );
        e.sample("x_total", &[], 4);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things, with a \\\\ and a\\nnewline.\n# TYPE x_total counter\n\
             x_total{route=\"a\\\"b\\\\c\\nd\",m=\"tools/call\"} 3\nx_total 4\n"
        );
    }

    #[test]
    fn histogram_lines_end_with_inf_sum_and_count() {
        let mut e = Exposition::new();
        e.family("h_seconds", Kind::Histogram, "H.");
        let snap = Snapshot {
            buckets: vec![(0.005, 1), (0.5, 3)],
            count: 4,
            sum: 1.25,
        };
        e.histogram("h_seconds", &[("route", "crm")], &snap);
        assert_eq!(
            e.finish(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{route=\"crm\",le=\"0.005\"} 1\n\
             h_seconds_bucket{route=\"crm\",le=\"0.5\"} 3\n\
             h_seconds_bucket{route=\"crm\",le=\"+Inf\"} 4\n\
             h_seconds_sum{route=\"crm\"} 1.25\nh_seconds_count{route=\"crm\"} 4\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("mcp_gateway_requests_total"));
        assert!(valid_name("a:b_c9"));
        assert!(!valid_name("9a"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }
}
