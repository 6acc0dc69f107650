//! `RequestServerVersion` for the EWS emulator: which schema versions a request may ask for,
//! how they order (so features newer than the requested version are refused, as Exchange
//! does), and the version the reply's `t:ServerVersionInfo` reports back.

use super::ops::Fault;
use super::wire::Element;

/// types.xsd `ExchangeVersionType` names, oldest first.
const NAMED_VERSIONS: &[&str] = &[
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2009",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2012",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
];

/// The version a request is processed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestedVersion {
    /// The name as the client sent it (`Exchange2013_SP1`, `V2016_10_10`, …).
    pub name: String,
    /// Position in [`NAMED_VERSIONS`]; dated versions (`V2015_10_05` and later) rank after
    /// all named ones.
    rank: usize,
}

impl RequestedVersion {
    /// Reads a version name; `None` for names Exchange does not know.
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(rank) = NAMED_VERSIONS.iter().position(|v| *v == name) {
            return Some(Self {
                name: name.to_owned(),
                rank,
            });
        }
        // Dated schema versions: `V` + `YYYY_MM_DD` (types.xsd lists V2015_10_05 …
        // V2016_10_10; Exchange 2019 and Online accept later dates too).
        let dated = name.strip_prefix('V').is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('_').collect();
            parts.len() == 3
                && [4, 2, 2].iter().zip(&parts).all(|(len, part)| {
                    part.len() == *len && part.bytes().all(|b| b.is_ascii_digit())
                })
                && &rest[..4] >= "2015"
        });
        dated.then(|| Self {
            name: name.to_owned(),
            rank: NAMED_VERSIONS.len(),
        })
    }

    /// Whether this version includes everything `name` (a named version) introduced.
    pub fn at_least(&self, name: &str) -> bool {
        NAMED_VERSIONS
            .iter()
            .position(|v| *v == name)
            .is_none_or(|rank| self.rank >= rank)
    }
}

impl Default for RequestedVersion {
    /// A request without `RequestServerVersion` is processed as an Exchange 2007 request.
    fn default() -> Self {
        Self {
            name: NAMED_VERSIONS[0].to_owned(),
            rank: 0,
        }
    }
}

/// The version an envelope asks for; a fault (`ErrorInvalidServerVersion`) for unknown names.
pub(crate) fn requested(envelope: &Element) -> Result<RequestedVersion, Fault> {
    let Some(header) = envelope.path(&["Header", "RequestServerVersion"]) else {
        return Ok(RequestedVersion::default());
    };
    let name = header.attr("Version").unwrap_or_default().trim();
    RequestedVersion::parse(name).ok_or_else(|| Fault {
        code: "ErrorInvalidServerVersion",
        message: format!(
            "The specified server version '{name}' is invalid; use an ExchangeVersionType value such as Exchange2013_SP1."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let sp1 = RequestedVersion::parse("Exchange2013_SP1");
        assert!(sp1.as_ref().is_some_and(|v| v.at_least("Exchange2010")));
        assert!(sp1.as_ref().is_some_and(|v| !v.at_least("Exchange2016")));
        let old = RequestedVersion::parse("Exchange2007_SP1");
        assert!(old.is_some_and(|v| !v.at_least("Exchange2010")));
        assert!(RequestedVersion::parse("V2017_07_11").is_some_and(|v| v.at_least("Exchange2016")));
        for bad in ["Exchange2099", "", "V2_23", "V2017_7_11", "exchange2013"] {
            assert!(RequestedVersion::parse(bad).is_none(), "{bad}");
        }
    }
}
