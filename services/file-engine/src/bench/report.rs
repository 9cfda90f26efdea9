//! The bench's results: every figure is printed beside the baseline measured in the same run,
//! with the ratio, the conditions it was measured under (concurrency, payload, samples), its
//! latency distribution when it has one, and whether its target was met.
//!
//! Owns the text table, the `--json` document and the `--check` verdict; measuring is the
//! scenarios' job.

use std::time::Duration;

use serde::Serialize;

/// Latency distribution of one figure (nearest-rank percentiles), in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of `samples` (sorted here); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_micros().min(u64::MAX as u128) as u64;
        Some(Latency {
            p50_us: us(percentile(samples, 50.0)),
            p90_us: us(percentile(samples, 90.0)),
            p99_us: us(percentile(samples, 99.0)),
            max_us: us(percentile(samples, 100.0)),
        })
    }

    fn text(&self) -> String {
        let f = |us: u64| format!("{:.2?}", Duration::from_micros(us));
        format!(
            "p50 {} p90 {} p99 {} max {}",
            f(self.p50_us),
            f(self.p90_us),
            f(self.p99_us),
            f(self.max_us)
        )
    }
}

/// Percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a figure must reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The measured value (a rate) must be at least this.
    AtLeast { value: f64 },
    /// The measured value must be at most this (a time or a latency in the figure's unit).
    AtMost { value: f64 },
    /// measured / baseline must be at least this.
    RatioAtLeast { value: f64 },
    /// Informational: no target.
    None,
}

/// One measured figure beside its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Scenario of the table, e.g. `accept`.
    pub scenario: &'static str,
    /// What was measured, e.g. `mkdir accepted/s (default sync)`.
    pub name: String,
    pub unit: &'static str,
    pub measured: f64,
    /// What the baseline measured, e.g. `raw acked publish/s`.
    pub baseline_name: String,
    pub baseline: f64,
    /// measured / baseline.
    pub ratio: f64,
    pub latency: Option<Latency>,
    pub baseline_latency: Option<Latency>,
    pub concurrency: usize,
    pub payload_bytes: usize,
    pub samples: usize,
    pub target: Target,
    /// Extra conditions worth knowing (server settings, rules, what bounds it).
    pub note: String,
}

impl Figure {
    /// Whether the target was met (always true without a target).
    pub fn met(&self) -> bool {
        match self.target {
            Target::AtLeast { value } => self.measured >= value,
            Target::AtMost { value } => self.measured <= value,
            Target::RatioAtLeast { value } => self.ratio >= value,
            Target::None => true,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::AtLeast { value } => format!("≥ {value} {}", self.unit),
            Target::AtMost { value } => format!("≤ {value} {}", self.unit),
            Target::RatioAtLeast { value } => format!("ratio ≥ {value}"),
            Target::None => "—".into(),
        }
    }
}

/// Builds a figure; `ratio` is computed from measured and baseline.
pub struct FigureBuilder(Figure);

impl FigureBuilder {
    pub fn new(scenario: &'static str, name: impl Into<String>, unit: &'static str) -> Self {
        FigureBuilder(Figure {
            scenario,
            name: name.into(),
            unit,
            measured: 0.0,
            baseline_name: String::new(),
            baseline: 0.0,
            ratio: 0.0,
            latency: None,
            baseline_latency: None,
            concurrency: 1,
            payload_bytes: 0,
            samples: 0,
            target: Target::None,
            note: String::new(),
        })
    }
    pub fn measured(mut self, v: f64, latency: Option<Latency>) -> Self {
        self.0.measured = v;
        self.0.latency = latency;
        self
    }
    pub fn baseline(mut self, name: impl Into<String>, v: f64, latency: Option<Latency>) -> Self {
        self.0.baseline_name = name.into();
        self.0.baseline = v;
        self.0.baseline_latency = latency;
        self
    }
    pub fn conditions(mut self, concurrency: usize, payload_bytes: usize, samples: usize) -> Self {
        self.0.concurrency = concurrency;
        self.0.payload_bytes = payload_bytes;
        self.0.samples = samples;
        self
    }
    pub fn target(mut self, target: Target) -> Self {
        self.0.target = target;
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.0.note = note.into();
        self
    }
    pub fn build(mut self) -> Figure {
        self.0.ratio = if self.0.baseline > 0.0 {
            self.0.measured / self.0.baseline
        } else {
            0.0
        };
        self.0
    }
}

/// Every figure of one run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: String,
    pub quick: bool,
    pub figures: Vec<Figure>,
}

impl Report {
    /// Adds a figure and prints it at once (unless the output is JSON), so a long run shows
    /// progress.
    pub fn add(&mut self, figure: Figure, json: bool) {
        if !json {
            print_figure(&figure);
        }
        self.figures.push(figure);
    }

    /// Figures whose target was missed.
    pub fn missed(&self) -> Vec<&Figure> {
        self.figures.iter().filter(|f| !f.met()).collect()
    }

    /// The closing summary: one line per figure.
    pub fn print_summary(&self) {
        println!("\nsummary ({}):", self.machine);
        println!(
            "{:<10} {:<44} {:>12} {:>12} {:>7}  target",
            "scenario", "figure", "measured", "baseline", "ratio"
        );
        for f in &self.figures {
            println!(
                "{:<10} {:<44} {:>12.1} {:>12.1} {:>7.2}  {} {}",
                f.scenario,
                f.name,
                f.measured,
                f.baseline,
                f.ratio,
                f.target_text(),
                if f.met() { "met" } else { "MISSED" }
            );
        }
    }
}

fn print_figure(f: &Figure) {
    println!(
        "[{}] {}: {:.1} {} | baseline {}: {:.1} | ratio {:.2} | target {} → {}",
        f.scenario,
        f.name,
        f.measured,
        f.unit,
        f.baseline_name,
        f.baseline,
        f.ratio,
        f.target_text(),
        if f.met() { "met" } else { "MISSED" }
    );
    println!(
        "    concurrency {}, payload {} B, samples {}",
        f.concurrency, f.payload_bytes, f.samples
    );
    if let Some(l) = &f.latency {
        println!("    latency   {}", l.text());
    }
    if let Some(l) = &f.baseline_latency {
        println!("    baseline  {}", l.text());
    }
    if !f.note.is_empty() {
        println!("    {}", f.note);
    }
}

/// A short description of the machine: cores, CPU model, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {model}, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&s, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn targets_decide_met() {
        let f = |target, measured, baseline| {
            FigureBuilder::new("t", "f", "/s")
                .measured(measured, None)
                .baseline("b", baseline, None)
                .target(target)
                .build()
                .met()
        };
        assert!(f(Target::AtLeast { value: 5.0 }, 5.0, 1.0));
        assert!(!f(Target::AtLeast { value: 5.0 }, 4.9, 1.0));
        assert!(f(Target::AtMost { value: 10.0 }, 9.0, 1.0));
        assert!(!f(Target::AtMost { value: 10.0 }, 11.0, 1.0));
        assert!(f(Target::RatioAtLeast { value: 0.7 }, 7.0, 10.0));
        assert!(!f(Target::RatioAtLeast { value: 0.7 }, 6.9, 10.0));
        // A missing baseline never passes a ratio target.
        assert!(!f(Target::RatioAtLeast { value: 0.7 }, 7.0, 0.0));
    }
}
