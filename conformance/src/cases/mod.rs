//! The conformance cases, grouped as critest groups them. Every case asserts concrete values
//! and was validated against the reference (containerd 1.6's built-in CRI).

mod container;
mod events;
mod image;
mod logs;
mod mounts;
mod namespaces;
mod prelude;
mod resources;
mod runtime_info;
mod sandbox;
mod security;
mod stats;
mod streaming;
mod streaming_spdy;

use crate::runner::Case;

/// Every case, in report order.
pub fn all() -> Vec<Case> {
    [
        runtime_info::cases(),
        sandbox::cases(),
        namespaces::cases(),
        container::cases(),
        mounts::cases(),
        resources::cases(),
        logs::cases(),
        image::cases(),
        security::cases(),
        streaming::cases(),
        streaming_spdy::cases(),
        stats::cases(),
        events::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// The number of cases: a case that goes missing (an unregistered group, a lost line)
    /// fails here; adding or removing a case on purpose changes this number with it.
    const CASES: usize = 266;

    #[test]
    fn case_names_are_unique_and_none_is_lost() {
        let cases = super::all();
        let names: HashSet<String> = cases.iter().map(|c| c.full_name()).collect();
        assert_eq!(names.len(), cases.len(), "duplicate case names");
        assert_eq!(cases.len(), CASES, "the number of cases changed");
    }
}
