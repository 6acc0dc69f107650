//! Siebel REST emulator (to be written).
