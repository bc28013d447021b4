//! The command line: `train <nin|googlenet> [options]` and `train eval --checkpoint FILE`.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "train",
    version,
    about = "Train NiN or GoogLeNet on Fashion-MNIST with a from-scratch Rust engine",
    long_about = "Train NiN or GoogLeNet on Fashion-MNIST with a from-scratch Rust engine.\n\n\
                  Defaults follow d2l's recipe: SGD, lr 0.1, batch 128, 10 epochs, Xavier-uniform \
                  weights, images resized to 224 (NiN) or 96 (GoogLeNet).\n\n\
                  Data is looked for in --data DIR, then $FASHION_MNIST_DIR, then \
                  /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), then the \
                  per-user cache; otherwise it is downloaded there, checksums verified."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train d2l's Network in Network (input 1x224x224 by default)
    Nin(TrainArgs),
    /// Train d2l's GoogLeNet (input 1x96x96 by default)
    #[command(name = "googlenet")]
    GoogLeNet(TrainArgs),
    /// Report the test accuracy of a saved checkpoint
    Eval(EvalArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    /// The GPU when one works, else the CPU
    Auto,
}

/// The arithmetic of convolutions on a GPU (the CPU computes in FP32 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionKind {
    /// TF32 tensor cores for convolutions, FP32 for the linear layer: PyTorch's default
    Tf32,
    /// FP32 everywhere
    Fp32,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Directory holding the four Fashion-MNIST IDX files (.gz or raw)
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Use only the first N test images
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub test_limit: Option<u64>,
    /// Device to compute on
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Arithmetic of convolutions on the GPU
    #[arg(long, value_enum, default_value_t = PrecisionKind::Tf32)]
    pub precision: PrecisionKind,
    /// Worker threads for the CPU backend (default: all cores)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Passes over the training set
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub epochs: usize,
    /// Images per step
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Learning rate
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    pub lr: f32,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// SGD momentum (ignored by Adam)
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub momentum: f32,
    /// L2 weight decay added to the gradient (PyTorch's `weight_decay`)
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Side of the square input images (default: 224 for NiN, 96 for GoogLeNet)
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Seed for weights, shuffling and dropout
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,
    /// Use only the first N training images
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub train_limit: Option<u64>,
    /// Output directory (default: runs/<model>-<date-time>, or the checkpoint's directory with --resume)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Print the model summary for the chosen resize and exit
    #[arg(long)]
    pub summary: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Checkpoint written by a training run (checkpoint.safetensors)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Side of the input images (default: the resize the checkpoint was trained at)
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Images per evaluation step
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    #[command(flatten)]
    pub data: DataArgs,
}
