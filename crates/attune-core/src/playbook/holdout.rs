//! Randomised, persistent holdouts: whether a customer is held out of a rule is a hash of
//! the rule's name and the customer's own id with a fixed salt, so it is the same on
//! every run and every machine, independent of everything else about the customer, and
//! monotone in the share (raising a rule's share from 10% to 20% keeps everyone who was
//! held out held out).

/// Changing it would reshuffle every holdout group and spoil every running measurement.
const SALT: &[u8] = b"attune-holdout-v1";

/// 64-bit FNV-1a.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A point in [0, 1) for the rule and customer: uniform over customers. FNV-1a's low
/// bits mix poorly, so the high 53 bits are used after a final avalanche step.
pub fn draw(rule: &str, customer_external_id: &str) -> f64 {
    let mut h = fnv1a(&[
        SALT,
        rule.as_bytes(),
        &[0x1f],
        customer_external_id.as_bytes(),
    ]);
    // SplitMix64's finaliser: every input bit reaches every output bit.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the customer is held out of the rule at this share.
pub fn is_held_out(rule: &str, customer_external_id: &str, share: f64) -> bool {
    share > 0.0 && draw(rule, customer_external_id) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_runs_and_close_to_the_share_over_100000_customers() {
        let ids: Vec<String> = (0..100_000).map(|i| format!("C{i:06}")).collect();
        let held = |rule: &str, share: f64| -> Vec<bool> {
            ids.iter().map(|id| is_held_out(rule, id, share)).collect()
        };
        let first = held("welcome", 0.10);
        assert_eq!(first, held("welcome", 0.10), "the same on every run");
        let n = first.iter().filter(|h| **h).count() as f64;
        // Binomial sd at 100,000 and 10% is 0.00095; five of them.
        assert!((n / 1e5 - 0.10).abs() < 0.0048, "share {}", n / 1e5);
        // Another rule draws independently: about 10% of 10% overlap.
        let other = held("renewal", 0.10);
        let both = first.iter().zip(&other).filter(|(a, b)| **a && **b).count() as f64;
        assert!((both / 1e5 - 0.01).abs() < 0.0016, "overlap {}", both / 1e5);
        // Raising the share keeps everyone already held out.
        let wider = held("welcome", 0.20);
        assert!(first.iter().zip(&wider).all(|(a, b)| !*a || *b));
        let w = wider.iter().filter(|h| **h).count() as f64;
        assert!((w / 1e5 - 0.20).abs() < 0.0064, "share {}", w / 1e5);
        assert!(!is_held_out("welcome", "C000001", 0.0));
        // Pinned values: the hash must never change by accident, or every running
        // measurement would be reshuffled.
        assert!((draw("welcome", "C000001") - 0.235_920_968_284).abs() < 1e-12);
        assert!((draw("renewal", "C000001") - 0.804_120_084_472).abs() < 1e-12);
    }
}
