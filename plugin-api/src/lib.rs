//! Tandem plugin API (to be written).
