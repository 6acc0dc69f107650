//! Default contact mapping (to be written).
