//! End-to-end tests: the export engine against the Genesys Cloud simulator.
//! One test binary; modules by theme.

mod harness;

mod aws;
mod binaries;
mod chaos;
mod export;
mod faults;
mod fencing;
mod functions;
mod pacing;
mod probe;
mod resume;
mod stores;
mod tables;
mod unknowns;
