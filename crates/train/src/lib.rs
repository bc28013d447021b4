//! The training program's library half: data, checkpoints, metrics, the plot and the loop.
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod memory;
pub mod metrics;
pub mod plot;
pub mod predict;
pub mod run_dir;
pub mod schedule;
pub mod session;
pub mod state;
pub mod stop;
pub mod weights;
