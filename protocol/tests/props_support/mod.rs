//! What the property tests share: how many cases a property runs.

use proptest::test_runner::Config as ProptestConfig;

/// `ci_cases` per property in the normal suite, or `PROPTEST_CASES` when it is set
/// (`scripts/props.sh` runs millions); no failure files are written.
pub fn cases(ci_cases: u32) -> ProptestConfig {
    let cases =
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(ci_cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}
