//! End-to-end tests (to be written).
