//! `train`: trains NiN or GoogLeNet on Fashion-MNIST, or evaluates a checkpoint.
use anyhow::Result;
use clap::Parser;
use cuda::Cuda;
use models::ModelKind;
use std::process::ExitCode;
use tensor::Cpu;
use train::cli::{Cli, Command, DataArgs, DeviceKind, PrecisionKind};
use train::{predict, session, stop};

/// Applies `--threads` (CPU work: kernels and the data loader).
fn set_threads(data: &DataArgs) -> Result<()> {
    if let Some(n) = data.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n as usize).build_global()?;
    }
    Ok(())
}

/// The GPU for `--device cuda` (an error that says why if none works), the CPU for `cpu`, and
/// the GPU when one works for `auto`.
fn gpu(data: &DataArgs) -> Result<Option<Cuda>> {
    let precision = match data.precision {
        PrecisionKind::Tf32 => cuda::Precision::Tf32,
        PrecisionKind::Fp32 => cuda::Precision::Fp32,
    };
    let gpu = match data.device {
        DeviceKind::Cpu => None,
        DeviceKind::Cuda => Some(Cuda::new(0).map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?),
        DeviceKind::Auto => Cuda::new(0).ok(),
    };
    Ok(gpu.map(|g| g.with_precision(precision)))
}

/// Runs `$body` with `$b` bound to the chosen backend (one instantiation per backend type).
macro_rules! on_device {
    ($data:expr, |$b:ident| $body:expr) => {{
        set_threads($data)?;
        match gpu($data)? {
            Some(gpu) => {
                let $b = &gpu;
                $body
            }
            None => {
                let $b = &Cpu;
                $body
            }
        }
    }};
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Nin(args) => {
            stop::install()?;
            on_device!(&args.data, |b| session::train(b, ModelKind::Nin, &args).map(|_| ()))
        }
        Command::GoogLeNet(args) => {
            stop::install()?;
            on_device!(&args.data, |b| session::train(b, ModelKind::GoogLeNet, &args).map(|_| ()))
        }
        Command::Eval(args) => on_device!(&args.data, |b| session::eval(b, &args).map(|_| ())),
        Command::Predict(args) => on_device!(&args.data, |b| {
            let predictions = predict::predict(b, &args)?;
            let k = args.top as usize;
            print!(
                "{}",
                if args.json {
                    predict::format_json(&predictions, k)
                } else {
                    predict::format_text(&predictions, k)
                }
            );
            Ok(())
        }),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<stop::Stopped>() => {
            eprintln!("{e}");
            ExitCode::from(stop::EXIT_STATUS)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
