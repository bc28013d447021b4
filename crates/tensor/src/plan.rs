//! How a backend computes a convolution (`Backend::conv_plan`): which algorithm, and how much of
//! the batch one step of it covers. The layers ask; the backend decides from what it knows of its
//! device (cache sizes on a CPU, multiprocessors and memory on a GPU).

/// The algorithm of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgorithm {
    /// 1x1, stride 1, no padding: products over the NCHW input itself, image by image.
    Direct,
    /// The input unfolded a chunk of images at a time (im2col), one product per chunk.
    Im2col,
    /// Winograd's F(tile x tile, r x r) (`tensor::winograd::output_tile` says where it applies).
    Winograd {
        /// The output tile side m: each tile yields m x m outputs.
        tile: usize,
    },
}

/// A backend's plan for one convolution geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// How the convolution is computed.
    pub algorithm: ConvAlgorithm,
    /// The most values one chunk's largest buffer may hold (im2col's column matrix, Winograd's
    /// transformed tiles): the images per chunk follow from it (at least one).
    pub chunk_values: usize,
    /// im2col only: the forward pass keeps every chunk's column matrix (the whole batch's:
    /// `n * col_rows() * col_cols()` values, held until the backward pass ends) and the weight
    /// gradient's products read them, instead of unfolding the input a second time. A trade of
    /// memory for a pass over it: a GPU with memory to spare takes it, a CPU (whose chunks are
    /// sized to stay in its cache) does not.
    pub keep_columns: bool,
    /// im2col only: the products' epilogues store what a convolution's im2col path would move
    /// in passes of their own. A convolution whose weights stack several outputs' (Inception's
    /// 1x1 branches) stores each chunk's product straight into every output, finished by its
    /// bias and ReLU ([`crate::Backend::gemm_rows_epilogue`]), and a 1x1 convolution's input
    /// gradient is stored as NCHW by its product (`gemm_epilogue`, no `col2im`). For backends
    /// whose epilogues make one product of it (a GPU); a CPU's passes run from its cache.
    pub epilogue_stores: bool,
    /// im2col only, for a single convolution with a kernel larger than 1x1: its forward and
    /// weight gradient come from [`crate::Backend::conv_forward`] and
    /// [`crate::Backend::conv_weight_grad`], over the whole batch at once, which a backend may
    /// compute without column matrices (the CUDA backend's implicit products in TF32 gather
    /// the input as they read it); the convolution unfolds and keeps no columns itself.
    pub implicit: bool,
    /// With `implicit`: the input gradient too comes from the backend
    /// ([`crate::Backend::conv_input_grad`], gathering the output gradient), rather than from
    /// columns the convolution folds back itself (`col2im`).
    pub implicit_input_grad: bool,
    /// The direct path's input gradient may be stored through the mask of a ReLU before the
    /// convolution ([`crate::Epilogue::mask`]): the backend applies it in the product's store
    /// (a GPU); a CPU would compose it of passes of its own, so it does not ask for it.
    pub input_grad_masks: bool,
}
