//! Text metrics: normalisation, token F1 (SQuAD), sentence BLEU (sacrebleu) and ROUGE-L
//! (rouge-score), each a plain function of strings.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// How text is normalised before a comparison. [`TextOptions::squad`] is the official SQuAD
/// script's `normalize_answer`: lowercase, drop ASCII punctuation, drop the articles
/// a/an/the, collapse whitespace (applied in that order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// Compare lowercased text.
    pub ignore_case: bool,
    /// Remove ASCII punctuation (Python's `string.punctuation`).
    pub strip_punctuation: bool,
    /// Remove the words "a", "an" and "the" (lowercase ones, so pair it with `ignore_case`).
    pub strip_articles: bool,
    /// Trim and collapse runs of whitespace into one space.
    pub normalize_whitespace: bool,
}

impl TextOptions {
    /// All four normalisations, as SQuAD's official evaluation script.
    pub const fn squad() -> Self {
        TextOptions {
            ignore_case: true,
            strip_punctuation: true,
            strip_articles: true,
            normalize_whitespace: true,
        }
    }

    /// Applies the chosen normalisations to `text`.
    pub fn apply(&self, text: &str) -> String {
        let mut s = if self.ignore_case {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        if self.strip_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        if self.strip_articles {
            s = ARTICLES.replace_all(&s, " ").into_owned();
        }
        if self.normalize_whitespace {
            s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        s
    }
}

static ARTICLES: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"\b(a|an|the)\b").expect("a constant regex compiles")
});

/// SQuAD's `normalize_answer`.
pub fn squad_normalize(text: &str) -> String {
    TextOptions::squad().apply(text)
}

/// Token-level F1 between a prediction and a reference, as SQuAD v2's official script: both
/// are normalised with [`squad_normalize`] when `normalize` is set, split on whitespace, and
/// compared as bags of tokens. When either side has no tokens, F1 is 1.0 if both are empty and
/// 0.0 otherwise.
pub fn token_f1(prediction: &str, reference: &str, normalize: bool) -> f64 {
    let (p, r) = if normalize {
        (squad_normalize(prediction), squad_normalize(reference))
    } else {
        (prediction.to_string(), reference.to_string())
    };
    let pred: Vec<&str> = p.split_whitespace().collect();
    let gold: Vec<&str> = r.split_whitespace().collect();
    if pred.is_empty() || gold.is_empty() {
        return if pred == gold { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / gold.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

static TOKENIZE_13A: LazyLock<[(Regex, &'static str); 4]> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    let re = |p: &str| Regex::new(p).expect("a constant regex compiles");
    [
        (re(r"([{-~\[-`\x20-&(-+:-@/])"), " ${1} "),
        (re(r"([^0-9])([.,])"), "${1} ${2} "),
        (re(r"([.,])([^0-9])"), " ${1} ${2}"),
        (re(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

/// sacrebleu's default `13a` tokenizer (mteval-v13a): splits punctuation off words, keeps
/// decimal points and thousands separators inside numbers.
pub fn tokenize_13a(text: &str) -> Vec<String> {
    let mut line = text
        .trim_end()
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, rep) in TOKENIZE_13A.iter() {
        line = re.replace_all(&line, *rep).into_owned();
    }
    line.split_whitespace().map(str::to_string).collect()
}

const MAX_ORDER: usize = 4;

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Sentence BLEU-4 in 0..=1, as `sacrebleu.sentence_bleu(hypothesis, references)` (divided by
/// 100): `13a` tokens, case-sensitive, clipped n-gram counts over all references, the closest
/// reference length (shorter on ties) for the brevity penalty, `exp` smoothing (mteval's:
/// each order with no match gets precision 1 / (2^k · total), k counting such orders) and
/// effective order (orders longer than the hypothesis are left out). No match at all scores 0.
pub fn sentence_bleu(hypothesis: &str, references: &[&str]) -> f64 {
    let hyp = tokenize_13a(hypothesis);
    let refs: Vec<Vec<String>> = references.iter().map(|r| tokenize_13a(r)).collect();
    let hyp_len = hyp.len();
    let ref_len = closest_ref_len(hyp_len, refs.iter().map(Vec::len));

    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    for n in 1..=MAX_ORDER {
        let mut max_ref: HashMap<&[String], usize> = HashMap::new();
        for r in &refs {
            for (g, c) in ngram_counts(r, n) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        for (g, c) in ngram_counts(&hyp, n) {
            correct[n - 1] += c.min(max_ref.get(g).copied().unwrap_or(0));
        }
        total[n - 1] = hyp_len.saturating_sub(n - 1);
    }
    if correct.iter().all(|&c| c == 0) {
        return 0.0;
    }
    let bp = if hyp_len < ref_len {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    } else {
        1.0
    };
    let mut smooth = 1.0;
    let mut log_sum = 0.0;
    let mut order = 0;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        order = n + 1;
        let p = if correct[n] == 0 {
            smooth *= 2.0;
            1.0 / (smooth * total[n] as f64)
        } else {
            correct[n] as f64 / total[n] as f64
        };
        log_sum += p.ln();
    }
    bp * (log_sum / order as f64).exp()
}

fn closest_ref_len(hyp_len: usize, ref_lens: impl Iterator<Item = usize>) -> usize {
    let mut best: Option<(usize, usize)> = None; // (diff, len)
    for len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map(|(_, l)| l).unwrap_or(0)
}

/// rouge-score's tokenizer without a stemmer: lowercase, every run of characters that are not
/// letters or digits is a separator. (rouge-score keeps only ASCII `a-z0-9`; here letters and
/// digits of any script count, which is the same on ASCII text.)
pub fn rouge_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// ROUGE-L F-measure in 0..=1 on the longest common subsequence of [`rouge_tokens`], as
/// `rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)`.
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let pred = rouge_tokens(prediction);
    let gold = rouge_tokens(reference);
    if pred.is_empty() || gold.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&gold, &pred);
    let precision = lcs as f64 / pred.len() as f64;
    let recall = lcs as f64 / gold.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_drops_case_punctuation_articles_and_spaces() {
        assert_eq!(
            squad_normalize("  The Eiffel-Tower, in   Paris! "),
            "eiffeltower in paris"
        );
        assert_eq!(squad_normalize("an apple a day"), "apple day");
        // "the" inside a word is not an article
        assert_eq!(squad_normalize("Theory of the atom"), "theory of atom");
    }

    #[test]
    fn only_chosen_normalisations_apply() {
        let o = TextOptions {
            ignore_case: true,
            ..Default::default()
        };
        assert_eq!(o.apply("The Cat!"), "the cat!");
        let o = TextOptions {
            normalize_whitespace: true,
            ..Default::default()
        };
        assert_eq!(o.apply(" a \n b "), "a b");
    }

    #[test]
    fn tokenizer_13a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("Hello, world. It costs 1,000.50 $!"),
            [
                "Hello", ",", "world", ".", "It", "costs", "1,000.50", "$", "!"
            ]
        );
        assert_eq!(
            tokenize_13a("state-of-the-art 3-4"),
            ["state-of-the-art", "3", "-", "4"]
        );
    }

    /// Expected tokens printed by sacrebleu 2.6.0's `Tokenizer13a`.
    #[test]
    fn tokenizer_13a_matches_sacrebleu() {
        let cases: &[(&str, &[&str])] = &[
            (
                r#"a{b}c~d[e]f^g_h`i"j#k%l&amp;m(n)o*p+q:r;s<t=u>v?w@x/y\z"#,
                &[
                    "a", "{", "b", "}", "c", "~", "d", "[", "e", "]", "f", "^", "g", "_", "h", "`",
                    "i", "\"", "j", "#", "k", "%", "l", "&", "m", "(", "n", ")", "o", "*", "p",
                    "+", "q", ":", "r", ";", "s", "<", "t", "=", "u", ">", "v", "?", "w", "@", "x",
                    "/", "y", "\\", "z",
                ],
            ),
            (
                "It's 5.5% of U.S.A., ok.",
                &[
                    "It's", "5.5", "%", "of", "U", ".", "S", ".", "A", ".", ",", "ok", ".",
                ],
            ),
            ("x - y -- 3-- ", &["x", "-", "y", "--", "3", "-", "-"]),
        ];
        for (text, want) in cases {
            assert_eq!(tokenize_13a(text), *want, "{text:?}");
        }
    }

    #[test]
    fn lcs_of_tokens() {
        let t = |s: &str| rouge_tokens(s);
        assert_eq!(lcs_len(&t("a b c d e"), &t("a c e x")), 3);
        assert_eq!(lcs_len(&t("x"), &t("y")), 0);
        assert_eq!(rouge_tokens("Don't STOP—now"), ["don", "t", "stop", "now"]);
    }

    #[test]
    fn closest_reference_length_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, [3, 7].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [7, 3].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [9, 6].into_iter()), 6);
    }
}
