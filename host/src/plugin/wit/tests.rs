//! Tests of the version table: the API versions it has bindings for are the ones a package
//! may declare, and every version's exports are distinct.

use super::*;

#[test]
fn the_versions_with_bindings_are_the_versions_packages_may_declare() {
    for version in [
        "0.1.0", "0.1.7", "0.2.0", "0.2.3", "0.0.9", "0.3.0", "1.0.0", "1.2.0",
    ] {
        let parsed = semver::Version::parse(version).expect("semver");
        assert_eq!(
            loads_api_version(&parsed),
            crate::package::check_api_version("p", version).is_ok(),
            "{version}"
        );
    }
}

#[test]
fn each_version_exports_its_own_interfaces_newest_first() {
    assert_eq!(MAPPING_EXPORTS[0], latest::MAPPING_EXPORT);
    assert_eq!(FILTER_EXPORTS[0], latest::FILTER_EXPORT);
    assert_eq!(CONFLICT_EXPORTS[0], latest::CONFLICT_EXPORT);
    for exports in [MAPPING_EXPORTS, FILTER_EXPORTS, CONFLICT_EXPORTS] {
        let mut unique = exports.to_vec();
        unique.dedup();
        assert_eq!(unique.len(), exports.len(), "{exports:?}");
    }
}
