//! Every CRI v1 RPC, for the coverage report (a unit test keeps the lists in `cri-api` equal
//! to the `rpc` lines of `cri-api/proto/api.proto`).

use std::collections::BTreeMap;

use super::Case;

pub use cri_api::{IMAGE_SERVICE, RUNTIME_SERVICE};

/// All RPCs, runtime service first.
pub fn all() -> impl Iterator<Item = &'static str> {
    RUNTIME_SERVICE.iter().chain(IMAGE_SERVICE).copied()
}

/// RPC name → number of cases exercising it, for every RPC (zero included).
pub fn coverage(cases: &[Case]) -> BTreeMap<&'static str, usize> {
    let mut map: BTreeMap<&'static str, usize> = all().map(|rpc| (rpc, 0)).collect();
    for case in cases {
        for rpc in case.rpcs {
            if let Some(count) = map.get_mut(rpc) {
                *count += 1;
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_proto() {
        let proto = include_str!("../../../cri-api/proto/api.proto");
        let rpc = regex::Regex::new(r"(?m)^\s*rpc\s+(\w+)\s*\(").unwrap_or_else(|e| panic!("{e}"));
        let mut in_proto: Vec<&str> = rpc
            .captures_iter(proto)
            .filter_map(|c| c.get(1))
            .map(|m| m.as_str())
            .collect();
        let mut listed: Vec<&str> = all().collect();
        in_proto.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, in_proto);
    }

    #[test]
    fn every_rpc_is_covered_and_every_named_rpc_exists() {
        let cases = crate::cases::all();
        let known: Vec<&str> = all().collect();
        for case in &cases {
            for rpc in case.rpcs {
                assert!(
                    known.contains(rpc),
                    "{}: unknown RPC {rpc}",
                    case.full_name()
                );
            }
        }
        let uncovered: Vec<_> = coverage(&cases)
            .into_iter()
            .filter(|(_, n)| *n == 0)
            .map(|(rpc, _)| rpc)
            .collect();
        assert!(uncovered.is_empty(), "RPCs without a case: {uncovered:?}");
    }
}
