//! Visibility by position in the Siebel emulator: which records a user sees under each
//! `ViewMode`, so "visible in My Contacts" rules can be tested (reference §6 "Query
//! parameters": `ViewMode` defaults to **Sales Rep**; also `Organization`, `All`, …; §6 "Auth":
//! the calling user must be an Employee with a Position to reach some data).
//!
//! Oracle documents the modes, not the data behind them, so the emulator's model is ours:
//! - A record's **team** is the Position Ids in `Position Id` (a comma-separated list, the
//!   emulator's form of a multi-value group) plus its `Primary Position Id`; its **owner** is
//!   `Primary Owner Id` (an Employee Id); its **organization** is `Organization Id`, else the
//!   organization of its primary position.
//! - Positions are `Position/Position` records (`Name`, `Parent Position Id`,
//!   `Organization Id`).
//! - The user is the Employee whose `Login Name` equals the login (case-insensitively); their
//!   position is that Employee's `Primary Position Id`.
//! - A record without a team is seen only under **All**, or under **Personal** by its owner:
//!   Sales Rep shows the records on the user's positions' teams, and a record on no team is
//!   on none of them (the stricter reading; Oracle's pages describe the modes, not teamless
//!   records, which the UI never makes but EIM and scripts can).
//! - **Sales Rep**: the team holds the user's position. **Personal**: the user's position is the
//!   primary one, or the user owns it. **Manager**: the team holds the user's position or one
//!   below it (by `Parent Position Id`). **Organization**: the record's organization is the
//!   organization of the user's position. **All**: every record.

use std::collections::{BTreeMap, HashSet};

use super::Record;

/// A record's team: a comma-separated list of Position Ids.
pub const TEAM_FIELD: &str = "Position Id";
/// The primary position of a record (also an Employee's own position).
pub const PRIMARY_POSITION_FIELD: &str = "Primary Position Id";
/// The Employee Id of a record's owner.
pub const OWNER_FIELD: &str = "Primary Owner Id";
/// A record's or position's organization.
pub const ORGANIZATION_FIELD: &str = "Organization Id";
/// A position's manager position.
pub const PARENT_POSITION_FIELD: &str = "Parent Position Id";
/// Which Employee a login is.
const LOGIN_FIELD: &str = "Login Name";
/// Where positions and employees live in the store.
const POSITIONS: &str = "Position/Position";
const EMPLOYEES: &str = "Employee/Employee";

/// The documented view modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    SalesRep,
    Personal,
    Manager,
    Organization,
    All,
}

impl ViewMode {
    /// `Sales Rep` (also `SalesRep`), `Personal`, `Manager`, `Organization`, `All`; any case.
    pub fn parse(text: &str) -> Option<Self> {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        match squeezed.as_str() {
            "salesrep" => Some(Self::SalesRep),
            "personal" => Some(Self::Personal),
            "manager" => Some(Self::Manager),
            "organization" => Some(Self::Organization),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// The Ids in a comma-separated list field.
pub fn id_list<'a>(record: &'a Record, field: &str) -> impl Iterator<Item = &'a str> {
    record.get(field).map(String::as_str).unwrap_or("").split(',').map(str::trim).filter(|id| !id.is_empty())
}

/// A record's team: `Position Id` entries plus `Primary Position Id`.
fn team(record: &Record) -> HashSet<&str> {
    id_list(record, TEAM_FIELD).chain(id_list(record, PRIMARY_POSITION_FIELD)).collect()
}

/// The user a request runs as, resolved from the store.
#[derive(Debug, Default)]
pub struct Viewer {
    employee_id: Option<String>,
    position_id: Option<String>,
    organization_id: Option<String>,
    /// The user's position and every position below it.
    positions_below: HashSet<String>,
}

impl Viewer {
    /// The Employee with this login, their position, its organization and the positions below.
    pub fn resolve(components: &BTreeMap<String, BTreeMap<String, Record>>, login: &str) -> Self {
        let empty = BTreeMap::new();
        let employees = components.get(EMPLOYEES).unwrap_or(&empty);
        let positions = components.get(POSITIONS).unwrap_or(&empty);
        let employee = employees
            .values()
            .find(|employee| employee.get(LOGIN_FIELD).is_some_and(|name| name.trim().eq_ignore_ascii_case(login)));
        let Some(employee) = employee else { return Self::default() };
        let employee_id = employee.get("Id").cloned();
        let position_id = employee.get(PRIMARY_POSITION_FIELD).map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        let organization_id =
            position_id.as_ref().and_then(|p| positions.get(p)).and_then(|p| p.get(ORGANIZATION_FIELD)).cloned();
        let mut positions_below = HashSet::new();
        if let Some(own) = &position_id {
            positions_below.insert(own.clone());
            // Walk down the hierarchy, level by level (a cycle in the data cannot loop: each
            // position is added once).
            let mut frontier = vec![own.clone()];
            while let Some(parent) = frontier.pop() {
                for (id, position) in positions {
                    let reports = position.get(PARENT_POSITION_FIELD).is_some_and(|p| p.trim() == parent);
                    if reports && positions_below.insert(id.clone()) {
                        frontier.push(id.clone());
                    }
                }
            }
        }
        Self { employee_id, position_id, organization_id, positions_below }
    }

    /// Whether the user sees `record` under `mode`.
    pub fn sees(&self, record: &Record, mode: ViewMode, components: &BTreeMap<String, BTreeMap<String, Record>>) -> bool {
        if mode == ViewMode::All {
            return true;
        }
        let team = team(record);
        let own = self.position_id.as_deref();
        match mode {
            ViewMode::All => true,
            ViewMode::SalesRep => own.is_some_and(|p| team.contains(p)),
            ViewMode::Personal => {
                let primary = record.get(PRIMARY_POSITION_FIELD).map(|p| p.trim());
                let owner = record.get(OWNER_FIELD).map(|o| o.trim());
                (own.is_some() && primary == own)
                    || (self.employee_id.is_some() && owner == self.employee_id.as_deref())
            }
            ViewMode::Manager => team.iter().any(|p| self.positions_below.contains(*p)),
            ViewMode::Organization => {
                let Some(mine) = &self.organization_id else { return false };
                let positions = components.get(POSITIONS);
                let organization = record.get(ORGANIZATION_FIELD).cloned().or_else(|| {
                    let primary = record.get(PRIMARY_POSITION_FIELD)?;
                    positions?.get(primary.trim())?.get(ORGANIZATION_FIELD).cloned()
                });
                organization.as_deref().map(str::trim) == Some(mine.trim())
            }
        }
    }
}
