//! Aggregate metrics of an evaluator over a run: mean score and pass rate.

/// Mean and pass rate of one evaluator over a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Lines evaluated (with or without a score).
    pub lines: usize,
    /// Lines that got a score.
    pub scored: usize,
    /// Lines that reached the pass mark.
    pub passed: usize,
    /// Mean of the scores; `None` when no line got one.
    pub mean: Option<f64>,
    /// `passed / lines`: a line without a score counts as not passed, so an evaluator that
    /// could not score (offline, unparseable replies) never looks good. `None` for no lines.
    pub pass_rate: Option<f64>,
}

impl Aggregate {
    /// Aggregates `(score, passed)` pairs, one per line.
    pub fn from_lines(lines: impl IntoIterator<Item = (Option<f64>, bool)>) -> Aggregate {
        let (mut n, mut scored, mut passed, mut sum) = (0usize, 0usize, 0usize, 0f64);
        for (score, pass) in lines {
            n += 1;
            if let Some(s) = score {
                scored += 1;
                sum += s;
            }
            if pass && score.is_some() {
                passed += 1;
            }
        }
        Aggregate {
            lines: n,
            scored,
            passed,
            mean: (scored > 0).then(|| sum / scored as f64),
            pass_rate: (n > 0).then(|| passed as f64 / n as f64),
        }
    }

    /// Aggregates judge verdicts.
    pub fn of_judge<'a>(scores: impl IntoIterator<Item = &'a super::JudgeScore>) -> Aggregate {
        Self::from_lines(scores.into_iter().map(|s| (s.score, s.passed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscored_lines_lower_the_pass_rate_but_not_the_mean() {
        let a = Aggregate::from_lines([
            (Some(5.0), true),
            (Some(2.0), false),
            (None, false),
            (Some(4.0), true),
        ]);
        assert_eq!((a.lines, a.scored, a.passed), (4, 3, 2));
        assert_eq!(a.mean, Some(11.0 / 3.0));
        assert_eq!(a.pass_rate, Some(0.5));
    }

    #[test]
    fn empty_and_all_unscored() {
        let e = Aggregate::from_lines([]);
        assert_eq!((e.mean, e.pass_rate), (None, None));
        let u = Aggregate::from_lines([(None, true), (None, false)]);
        assert_eq!((u.mean, u.pass_rate, u.passed), (None, Some(0.0), 0));
    }
}
