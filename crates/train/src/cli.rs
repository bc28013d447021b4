//! The command line: `train <nin|googlenet> [options]`, `train eval --checkpoint FILE` and
//! `train predict --checkpoint FILE [IMAGE...]`.
//!
//! The `///` comments on the options and values below are the program's `--help` text.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The whole command line (its help text is set in the `command` attribute).
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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; the comment on each is its help.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train d2l's Network in Network (input 1x224x224 by default)
    Nin(TrainArgs),
    /// Train d2l's GoogLeNet (input 1x96x96 by default)
    #[command(name = "googlenet")]
    GoogLeNet(TrainArgs),
    /// Report the test accuracy of a saved checkpoint
    Eval(EvalArgs),
    /// Name the classes a checkpoint sees in image files (PNG, JPEG) or test-set images
    Predict(PredictArgs),
}

/// The optimizer (`--optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    /// Stochastic gradient descent (with --momentum, if given)
    Sgd,
    /// Adam with PyTorch's default betas (0.9, 0.999) and eps (1e-8); ignores --momentum
    Adam,
}

/// Where to compute (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    /// The CPU (see --threads)
    Cpu,
    /// The first CUDA GPU (device 0); an error if it cannot be used
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

/// The options every subcommand shares: where the data is and what to compute on.
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

/// Flags without a default here are the run's settings: a new run takes the value given or the
/// default named in its help; a resumed run takes the stored value, and a flag that disagrees
/// with it is an error (`state::Settings`).
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Passes over the training set [default: 10; on --resume, the stored number]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Images per step [default: 128]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// Learning rate [default: 0.1]
    #[arg(long, value_name = "F")]
    pub lr: Option<f32>,
    /// [default: sgd]
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// SGD momentum (ignored by Adam) [default: 0]
    #[arg(long, value_name = "F")]
    pub momentum: Option<f32>,
    /// L2 weight decay added to the gradient (PyTorch's `weight_decay`) [default: 0]
    #[arg(long, value_name = "F")]
    pub weight_decay: Option<f32>,
    /// Side of the square input images [default: 224 for NiN, 96 for GoogLeNet]
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Seed for weights, shuffling and dropout [default: 42]
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Use only the first N training images [default: all]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub train_limit: Option<u64>,
    /// How the learning rate moves over the run [default: constant, as d2l]
    #[arg(long, value_enum)]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Epochs of linear learning-rate warm-up (fractions allowed) [default: 0]
    #[arg(long, value_name = "EPOCHS")]
    pub warmup_epochs: Option<f32>,
    /// Random crops (zero padding of --crop-padding pixels) and horizontal flips of the training
    /// images [default: off]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub augment: Option<bool>,
    /// Pixels of zero padding around each 28x28 image for --augment's random crops: how far an
    /// image may move each way (0: flips only) [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..28))]
    pub crop_padding: Option<u64>,
    /// Label smoothing of the loss, as PyTorch's `label_smoothing` [default: 0]
    #[arg(long, value_name = "F")]
    pub label_smoothing: Option<f32>,
    /// Hold out N training images for validation: the best epoch by validation accuracy is kept in
    /// best.safetensors and the test set is read once, at the end, for it [default: 0]
    #[arg(long, value_name = "N")]
    pub val_split: Option<usize>,
    /// Start from these weights instead of random ones: a checkpoint of a run, or a PyTorch
    /// state_dict saved with safetensors.torch.save_file (the optimizer starts afresh)
    #[arg(long, value_name = "FILE")]
    pub init_from: Option<PathBuf>,
    // The angle brackets are for --help, which shows this text as written.
    #[allow(rustdoc::invalid_html_tags)]
    /// Output directory [default: runs/<model>-<date-time>, or the checkpoint's directory with --resume]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (its settings are kept)
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Save a checkpoint this often within an epoch as well as at its end ("10m", "90s", "1h";
    /// "0s" after every step; "off" at epoch ends only)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_every)]
    pub checkpoint_every: Every,
    /// Print the model summary for the chosen resize and exit
    #[arg(long)]
    pub summary: bool,
    /// Data and device options.
    #[command(flatten)]
    pub data: DataArgs,
}

/// How often a run saves within an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// At epoch ends only.
    Off,
    /// Whenever this much time has passed since the last save (zero: after every step).
    After(std::time::Duration),
}

fn parse_every(s: &str) -> Result<Every, String> {
    if s == "off" {
        return Ok(Every::Off);
    }
    humantime::parse_duration(s)
        .map(Every::After)
        .map_err(|e| format!("{e} (examples: 10m, 90s, 1h30m, 0s, off)"))
}

/// The options of `train eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Weights: a checkpoint of a training run, or a PyTorch state_dict saved with
    /// safetensors.torch.save_file (its model recognised from its tensors)
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The model the weights are for (checked; found from the file when left out)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<models::ModelKind>,
    /// Side of the input images (default: the resize the checkpoint was trained at, else the model's)
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Images per evaluation step
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Data and device options.
    #[command(flatten)]
    pub data: DataArgs,
}

/// Whether `predict` inverts a picture's grey levels (Fashion-MNIST is light on black).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Invert {
    /// When the picture's border is light
    Auto,
    /// Always
    Yes,
    /// Never
    No,
}

/// The options of `train predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Weights: a checkpoint of a training run, or a PyTorch state_dict in safetensors
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// PNG or JPEG files, any size, grey or colour
    #[arg(value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Test-set images to predict: N, or N..M (M excluded)
    #[arg(long, value_name = "N..M", value_parser = crate::predict::parse_range)]
    pub test_index: Option<std::ops::Range<usize>>,
    /// Classes to show for each image
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub top: u64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Invert the grey levels of image files
    #[arg(long, value_enum, default_value_t = Invert::Auto)]
    pub invert: Invert,
    /// The model the weights are for (found from the file when left out)
    #[arg(long, value_name = "MODEL")]
    pub model: Option<models::ModelKind>,
    /// Side of the model's input (default: the checkpoint's resize, else the model's)
    #[arg(long, value_name = "N")]
    pub resize: Option<usize>,
    /// Data and device options.
    #[command(flatten)]
    pub data: DataArgs,
}
