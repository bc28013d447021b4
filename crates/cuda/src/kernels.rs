//! The embedded PTX, one module per `kernels/<family>.cu`, and the kernels each one exports.
pub(crate) const MODULES: &[(&str, &str, &[&str])] = &[
    (
        "gemm",
        include_str!("../../../kernels/ptx/gemm.ptx"),
        &["sgemm_nn", "sgemm_nt", "sgemm_tn", "sgemm_tt", "sgemm_split_reduce"],
    ),
    ("im2col", include_str!("../../../kernels/ptx/im2col.ptx"), &["im2col", "col2im"]),
    (
        "bias",
        include_str!("../../../kernels/ptx/bias.ptx"),
        &["add_bias", "bias_relu", "channel_sums", "channel_sums_reduce"],
    ),
    (
        "pool",
        include_str!("../../../kernels/ptx/pool.ptx"),
        &[
            "max_pool2d_forward",
            "max_pool2d_backward",
            "avg_pool2d_forward",
            "avg_pool2d_backward",
            "global_avg_pool_forward",
            "global_avg_pool_backward",
        ],
    ),
    (
        "activation",
        include_str!("../../../kernels/ptx/activation.ptx"),
        &["relu_forward", "relu_backward", "dropout_forward"],
    ),
    (
        "elementwise",
        include_str!("../../../kernels/ptx/elementwise.ptx"),
        &["fill", "axpy", "mul", "scale", "sum", "copy_channels", "transpose_blocks"],
    ),
    (
        "loss",
        include_str!("../../../kernels/ptx/loss.ptx"),
        &["softmax_cross_entropy_forward", "softmax_cross_entropy_backward"],
    ),
    (
        "optim",
        include_str!("../../../kernels/ptx/optim.ptx"),
        &["sgd_step", "sgd_momentum_step", "adam_step"],
    ),
];
