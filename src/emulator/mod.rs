//! Local Redshift Data API emulator (being written).
