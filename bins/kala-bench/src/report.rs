//! Samples summarised as min / median / max, and percentiles.

pub struct Measure {
    pub name: String,
    pub unit: &'static str,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

pub fn measure(name: impl Into<String>, unit: &'static str, mut samples: Vec<f64>) -> Measure {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    Measure {
        name: name.into(),
        unit,
        min: samples.first().copied().unwrap_or(f64::NAN),
        median: if n == 0 { f64::NAN } else { samples[n / 2] },
        max: samples.last().copied().unwrap_or(f64::NAN),
        samples,
    }
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
