//! EWS emulator (to be written).
