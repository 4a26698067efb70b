//! Log probabilities for requests with `logprobs: true`: one entry per answer token,
//! `{ token, logprob, bytes, top_logprobs }`, deterministic (drawn from the choice's seed), every
//! `logprob` at most 0 and the alternatives in `top_logprobs` in falling order, the answer's own
//! token first.

use serde_json::{json, Value};

use super::answer::{splitmix64, VOCABULARY};

/// Mixed into a choice's seed so that the log probabilities do not follow its words.
const LOGPROB_SALT: u64 = 0x6c6f_6770_726f_6273;

/// Logprobs are whole thousandths, so they print short (`-0.25`, not `-0.25000000000000006`).
fn logprob(milli: u64) -> f64 {
    -(milli as f64) / 1000.0
}

fn alternative(token: &str, milli: u64) -> Value {
    json!({ "token": token, "logprob": logprob(milli), "bytes": token.as_bytes() })
}

/// Most values of `logprobs` one request may make: entries and alternatives of all its choices
/// (a complete answer is built in memory).
pub(super) const MAX_LOGPROB_VALUES: u64 = 100_000;

/// The entries of `tokens`, each with `top` alternatives (0 to 20).
#[cfg(test)]
fn entries<S: AsRef<str>>(tokens: &[S], seed: u64, top: usize) -> Vec<Value> {
    tokens
        .iter()
        .enumerate()
        .map(|(position, token)| entry(token.as_ref(), seed, position, top))
        .collect()
}

/// The entry of `token`, the answer's token number `position`, with `top` alternatives (0 to
/// 20); it depends only on its arguments, so a stream computes each as it goes.
pub(super) fn entry(token: &str, seed: u64, position: usize, top: usize) -> Value {
    // An odd multiplier other than SplitMix64's step, so neighbouring entries do not share draws.
    let mut state = (seed ^ LOGPROB_SALT).wrapping_add((position as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
    // Between -0.001 and -2.5.
    let mut milli = 1 + splitmix64(&mut state) % 2500;
    let own = milli;
    let mut top_logprobs = Vec::with_capacity(top);
    if top > 0 {
        top_logprobs.push(alternative(token, milli));
    }
    let start = usize::try_from(splitmix64(&mut state)).unwrap_or(0);
    let others = VOCABULARY
        .iter()
        .cycle()
        .skip(start % VOCABULARY.len())
        .take(VOCABULARY.len())
        .filter(|word| **word != token);
    for word in others.take(top.saturating_sub(1)) {
        milli = milli.saturating_add(1 + splitmix64(&mut state) % 1500);
        top_logprobs.push(alternative(word, milli));
    }
    json!({
        "token": token,
        "logprob": logprob(own),
        "bytes": token.as_bytes(),
        "top_logprobs": top_logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_deterministic_non_positive_and_ordered() {
        let tokens = ["Hello", " world", "é", "."];
        let first = entries(&tokens, 42, 20);
        assert_eq!(first, entries(&tokens, 42, 20));
        assert_ne!(first, entries(&tokens, 43, 20));
        for (entry, token) in first.iter().zip(tokens) {
            assert_eq!(entry["token"], token);
            assert_eq!(entry["bytes"], json!(token.as_bytes()));
            let top = entry["top_logprobs"].as_array().expect("top");
            assert_eq!(top.len(), 20);
            assert_eq!(top[0]["token"], token);
            let logprobs: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().expect("f64")).collect();
            assert_eq!(logprobs[0], entry["logprob"].as_f64().expect("f64"));
            assert!(logprobs.iter().all(|l| *l < 0.0));
            assert!(logprobs.windows(2).all(|w| w[0] > w[1]), "{logprobs:?}");
            let distinct: std::collections::HashSet<&str> = top.iter().filter_map(|t| t["token"].as_str()).collect();
            assert_eq!(distinct.len(), 20);
        }
        assert_eq!(entries(&tokens, 1, 0)[0]["top_logprobs"], json!([]));
    }
}
