//! Figures, their targets, the printed table and `results.json`.

use serde::Serialize;

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// A target from the issue: `value` compared with the figure's median (or
/// its p95, for the input→photon p95 target).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Target {
    pub value: f64,
    /// Compare against the p95 column instead of the median.
    pub on_p95: bool,
}

impl Target {
    pub fn median(value: f64) -> Target {
        Target {
            value,
            on_p95: false,
        }
    }
    pub fn p95(value: f64) -> Target {
        Target {
            value,
            on_p95: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub group: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub median: Option<f64>,
    /// The worst-5 % bound: the 95th percentile for lower-is-better
    /// figures, the 5th percentile for higher-is-better ones.
    pub p95: Option<f64>,
    pub samples: usize,
    pub target: Option<Target>,
    pub met: Option<bool>,
}

impl Figure {
    /// A figure from samples (`None` median when there are none, which the
    /// table shows as a failure to measure rather than a number).
    pub fn from_samples(
        group: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        better: Better,
        samples: &[f64],
    ) -> Figure {
        let tail = match better {
            Better::Lower => 0.95,
            Better::Higher => 0.05,
        };
        Figure {
            group,
            name: name.into(),
            unit,
            better,
            median: quantile(samples, 0.5),
            p95: quantile(samples, tail),
            samples: samples.len(),
            target: None,
            met: None,
        }
    }

    /// A figure measured once over the whole run (no distribution).
    pub fn single(
        group: &'static str,
        name: impl Into<String>,
        unit: &'static str,
        better: Better,
        value: Option<f64>,
    ) -> Figure {
        Figure {
            group,
            name: name.into(),
            unit,
            better,
            median: value,
            p95: None,
            samples: usize::from(value.is_some()),
            target: None,
            met: None,
        }
    }

    pub fn target(mut self, target: Target) -> Figure {
        let value = if target.on_p95 { self.p95 } else { self.median };
        self.met = value.map(|v| match self.better {
            Better::Higher => v >= target.value,
            Better::Lower => v <= target.value,
        });
        self.target = Some(target);
        self
    }
}

/// The `q` quantile (0..=1) by nearest rank on a sorted copy.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * (v.len() - 1) as f64).round() as usize;
    v.get(rank.min(v.len() - 1)).copied()
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn fmt_target(f: &Figure) -> String {
    match f.target {
        None => String::new(),
        Some(t) => {
            let op = match f.better {
                Better::Higher => "≥",
                Better::Lower => "≤",
            };
            let col = if t.on_p95 { "p95 " } else { "" };
            format!("{col}{op} {}", fmt_value(Some(t.value)))
        }
    }
}

/// The table printed to stdout.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<10} {:<52} {:>10} {:>10} {:<9} {:>12} {:<4}",
        "group", "figure", "median", "p95", "unit", "target", "met"
    );
    out.push_str(&header);
    out.push('\n');
    out.push_str(&"-".repeat(header.chars().count()));
    out.push('\n');
    for f in figures {
        let met = match (f.target, f.met) {
            (None, _) => "",
            (Some(_), Some(true)) => "yes",
            (Some(_), Some(false)) => "NO",
            (Some(_), None) => "n/a",
        };
        out.push_str(&format!(
            "{:<10} {:<52} {:>10} {:>10} {:<9} {:>12} {:<4}\n",
            f.group,
            f.name,
            fmt_value(f.median),
            fmt_value(f.p95),
            f.unit,
            fmt_target(f),
            met
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(51.0));
        assert_eq!(quantile(&v, 0.95), Some(95.0));
        assert_eq!(quantile(&v, 0.05), Some(6.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[f64::NAN, 2.0], 0.5), Some(2.0));
    }

    #[test]
    fn targets_compare_the_right_column_and_direction() {
        let samples = [10.0, 20.0, 30.0, 40.0, 50.0];
        let f = Figure::from_samples("g", "lat", "ms", Better::Lower, &samples);
        assert_eq!(f.clone().target(Target::median(30.0)).met, Some(true));
        assert_eq!(f.clone().target(Target::p95(45.0)).met, Some(false));
        let g = Figure::from_samples("g", "fps", "fps", Better::Higher, &samples);
        assert_eq!(g.p95, Some(10.0), "worst tail of a higher-is-better figure");
        assert_eq!(g.clone().target(Target::median(31.0)).met, Some(false));
        let none = Figure::single("g", "x", "ms", Better::Lower, None).target(Target::median(1.0));
        assert_eq!(none.met, None);
        assert!(table(&[none]).contains("n/a"));
    }
}
