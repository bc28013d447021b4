//! `train`: trains NiN or GoogLeNet on Fashion-MNIST, or evaluates a checkpoint.
use anyhow::{bail, Result};
use clap::Parser;
use std::process::ExitCode;
use tensor::Cpu;
use train::cli::{Cli, Command, DataArgs, DeviceKind};
use train::session;

/// Applies `--threads` and picks the backend. CUDA lands with the GPU backend.
fn cpu_backend(data: &DataArgs) -> Result<Cpu> {
    if let Some(n) = data.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global()?;
    }
    match data.device {
        DeviceKind::Cpu | DeviceKind::Auto => Ok(Cpu),
        DeviceKind::Cuda => bail!("--device cuda: this build has no GPU backend yet; use --device cpu (or auto)"),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Nin(args) => session::train(&cpu_backend(&args.data)?, models::ModelKind::Nin, &args).map(|_| ()),
        Command::GoogLeNet(args) => session::train(&cpu_backend(&args.data)?, models::ModelKind::GoogLeNet, &args).map(|_| ()),
        Command::Eval(args) => session::eval(&cpu_backend(&args.data)?, &args).map(|_| ()),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
