//! Learning-rate schedules, as functions of the optimizer step: a run resumed at any step sets
//! the same rate as one never stopped.
use clap::ValueEnum;

/// How the learning rate moves over a run (`--schedule`); [`rate`] gives each step's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Schedule {
    /// The learning rate throughout (d2l's recipe), after any warm-up
    Constant,
    /// Cosine decay to 0 over the run, after the warm-up (SGDR without restarts)
    Cosine,
    /// PyTorch's OneCycleLR: a cosine rise from lr/25 to lr over the warm-up (30% of the run if
    /// none is given), then a cosine fall to lr/25e4
    Onecycle,
    /// lr, then lr/10 from half the run, lr/100 from three quarters, after the warm-up
    Step,
}

impl Schedule {
    /// The schedule's name on the command line and in a checkpoint's metadata.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
            Schedule::Onecycle => "onecycle",
            Schedule::Step => "step",
        }
    }
    /// The schedule whose [`Schedule::name`] is `s`, if any.
    pub fn parse(s: &str) -> Option<Schedule> {
        [Schedule::Constant, Schedule::Cosine, Schedule::Onecycle, Schedule::Step]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// The share of the run over which one-cycle rises when no warm-up is given (OneCycleLR's
/// `pct_start`).
pub const ONECYCLE_RISE: f64 = 0.3;

/// The rate of step `step` (0-based) of `total`, for a peak rate `lr` and `warmup` steps. A
/// linear warm-up (all but one-cycle) rises to `lr` at step `warmup - 1`.
pub fn rate(schedule: Schedule, lr: f32, step: u64, total: u64, warmup: u64) -> f32 {
    let lr = lr as f64;
    let total = total.max(1);
    let cos_between =
        |from: f64, to: f64, t: f64| to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
    let r = match schedule {
        Schedule::Onecycle => {
            let rise = if warmup > 0 { warmup } else { (ONECYCLE_RISE * total as f64).round() as u64 }
                .clamp(1, total);
            let initial = lr / 25.0;
            if step < rise {
                cos_between(initial, lr, step as f64 / rise as f64)
            } else {
                // The last step (`total - 1`) gets the final rate, as PyTorch's OneCycleLR.
                let fall = (total - 1).saturating_sub(rise).max(1);
                cos_between(lr, initial / 1e4, ((step - rise) as f64 / fall as f64).min(1.0))
            }
        }
        _ if step < warmup => lr * (step + 1) as f64 / warmup as f64,
        Schedule::Constant => lr,
        Schedule::Cosine => {
            // 0 at the last step.
            let span = (total - 1).saturating_sub(warmup).max(1);
            cos_between(lr, 0.0, ((step - warmup) as f64 / span as f64).min(1.0))
        }
        Schedule::Step => {
            let passed = [total / 2, total * 3 / 4].iter().filter(|&&m| step >= m).count();
            lr * 0.1f64.powi(passed as i32)
        }
    };
    r as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_schedules() {
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-7 * b.abs().max(1e-3);
        // Constant, with and without warm-up.
        assert_eq!(rate(Schedule::Constant, 0.1, 0, 100, 0), 0.1);
        assert!(close(rate(Schedule::Constant, 0.1, 0, 100, 10), 0.01));
        assert!(close(rate(Schedule::Constant, 0.1, 9, 100, 10), 0.1));
        // Cosine: the peak after warm-up, half way down in the middle of the rest, near 0 at the end.
        assert!(close(rate(Schedule::Cosine, 0.1, 10, 110, 10), 0.1));
        assert!(close(rate(Schedule::Cosine, 0.1, 60, 111, 10), 0.05));
        assert_eq!(rate(Schedule::Cosine, 0.1, 110, 111, 10), 0.0);
        // Step: /10 at half, /100 at three quarters.
        assert!(close(rate(Schedule::Step, 0.1, 49, 100, 0), 0.1));
        assert!(close(rate(Schedule::Step, 0.1, 50, 100, 0), 0.01));
        assert!(close(rate(Schedule::Step, 0.1, 75, 100, 0), 0.001));
        // One-cycle: lr/25 at the start, the peak at 30%, lr/25e4 at the end.
        assert!(close(rate(Schedule::Onecycle, 0.1, 0, 100, 0), 0.004));
        assert!(close(rate(Schedule::Onecycle, 0.1, 30, 100, 0), 0.1));
        assert!(close(rate(Schedule::Onecycle, 0.1, 99, 100, 0), 0.1 / 25e4));
        assert!(close(rate(Schedule::Onecycle, 0.1, 20, 100, 20), 0.1));
        for k in [Schedule::Constant, Schedule::Cosine, Schedule::Onecycle, Schedule::Step] {
            assert_eq!(Schedule::parse(k.name()), Some(k));
            // Never above the peak, never negative, also past the end.
            for step in 0..130 {
                let r = rate(k, 0.1, step, 120, 7);
                assert!((0.0..=0.1 + 1e-7).contains(&r), "{k:?} {step}: {r}");
            }
        }
    }
}
