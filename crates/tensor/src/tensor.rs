//! A dense f32 tensor: a shape and a shared, contiguous storage on one backend.
use crate::{bail, Backend, Result, Shape};
use std::sync::Arc;

/// Cloning is cheap (the storage is shared); writing through `storage_mut` copies first when
/// the storage is shared, so a value saved for backward is never changed under it.
pub struct Tensor<B: Backend> {
    backend: B,
    shape: Shape,
    storage: Arc<B::Storage>,
}

impl<B: Backend> Clone for Tensor<B> {
    fn clone(&self) -> Self {
        Tensor { backend: self.backend.clone(), shape: self.shape.clone(), storage: self.storage.clone() }
    }
}

impl<B: Backend> Tensor<B> {
    /// Wraps `storage` as a tensor of `shape`; an [`Error::Shape`](crate::Error::Shape) unless
    /// the storage holds exactly `shape.numel()` values.
    pub fn from_storage(backend: &B, shape: impl Into<Shape>, storage: B::Storage) -> Result<Self> {
        let shape = shape.into();
        let len = backend.storage_len(&storage);
        if len != shape.numel() {
            bail!(Shape, "storage of {len} values cannot hold shape {shape} ({} values)", shape.numel());
        }
        Ok(Tensor { backend: backend.clone(), shape, storage: Arc::new(storage) })
    }
    /// A tensor of zeros (an allocation the device refuses is an error).
    pub fn zeros(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        let storage = backend.zeros(shape.numel())?;
        Self::from_storage(backend, shape, storage)
    }
    /// A tensor whose every value the caller is about to overwrite (see `Backend::uninit`).
    pub fn uninit(backend: &B, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        let storage = backend.uninit(shape.numel())?;
        Self::from_storage(backend, shape, storage)
    }
    /// A tensor whose every value is `value`.
    pub fn full(backend: &B, shape: impl Into<Shape>, value: f32) -> Result<Self> {
        let mut t = Self::zeros(backend, shape)?;
        backend.fill(t.storage_mut()?, value)?;
        Ok(t)
    }
    /// A tensor holding a copy of `data`, read in row-major order; an
    /// [`Error::Shape`](crate::Error::Shape) unless `data` has exactly `shape.numel()` values.
    pub fn from_slice(backend: &B, shape: impl Into<Shape>, data: &[f32]) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            bail!(Shape, "{} values cannot fill shape {shape} ({} values)", data.len(), shape.numel());
        }
        let storage = backend.from_slice(data)?;
        Self::from_storage(backend, shape, storage)
    }
    /// A rank-0 tensor holding `value`.
    pub fn scalar(backend: &B, value: f32) -> Result<Self> {
        Self::from_slice(backend, Shape::scalar(), &[value])
    }

    /// The backend the storage lives on.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// The tensor's shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// The dimensions of the shape, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    /// The number of values.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// The backend buffer holding the values (row-major), possibly shared with other tensors.
    pub fn storage(&self) -> &B::Storage {
        &self.storage
    }
    /// Mutable access, copying the storage first if another tensor shares it.
    pub fn storage_mut(&mut self) -> Result<&mut B::Storage> {
        if Arc::get_mut(&mut self.storage).is_none() {
            self.storage = Arc::new(self.backend.copy(&self.storage)?);
        }
        Ok(Arc::get_mut(&mut self.storage).expect("storage is unique after the copy"))
    }
    /// Copies the values to the host, in row-major order, waiting for the device's queued work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.backend.to_vec(&self.storage)
    }
    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            bail!(Shape, "item() needs a tensor of one value, got shape {}", self.shape);
        }
        Ok(self.to_vec()?[0])
    }
    /// Starts copying the values to the host without waiting for the device (see
    /// [`Backend::start_read`]); [`Reading::finish`] or [`Reading::item`] waits for them. A
    /// training loop reads each step's loss this way after queueing the next step, so the GPU
    /// never idles while the host waits.
    pub fn read_later(&self) -> Result<Reading<B>> {
        Ok(Reading {
            inner: self.backend.start_read(&self.storage)?,
            backend: self.backend.clone(),
            shape: self.shape.clone(),
        })
    }
    /// The same values under another shape of equal size (no copy).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            bail!(
                Shape,
                "cannot reshape {} ({} values) to {shape} ({} values)",
                self.shape,
                self.numel(),
                shape.numel()
            );
        }
        Ok(Tensor { backend: self.backend.clone(), shape, storage: self.storage.clone() })
    }
    /// An output-to-be with this one's shape and backend (see `Backend::uninit`).
    pub fn uninit_like(&self) -> Result<Self> {
        Self::uninit(&self.backend, self.shape.clone())
    }
    /// A tensor of zeros with this one's shape and backend.
    pub fn zeros_like(&self) -> Result<Self> {
        Self::zeros(&self.backend, self.shape.clone())
    }
    /// `self += alpha * other`, shapes equal.
    pub fn axpy_assign(&mut self, alpha: f32, other: &Self) -> Result<()> {
        if self.shape != other.shape {
            bail!(Shape, "cannot add a tensor of shape {} to one of shape {}", other.shape, self.shape);
        }
        let backend = self.backend.clone();
        backend.axpy(alpha, other.storage(), self.storage_mut()?)
    }
}

impl<B: Backend> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} on {})", self.shape, self.backend.name())
    }
}

/// A tensor's values on their way to the host (from [`Tensor::read_later`]).
pub struct Reading<B: Backend> {
    inner: B::Reading,
    backend: B,
    shape: Shape,
}

impl<B: Backend> Reading<B> {
    /// The shape of the tensor being read.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// Waits for the copy and returns the values.
    pub fn finish(self) -> Result<Vec<f32>> {
        self.backend.finish_read(self.inner)
    }
    /// Waits for the copy of a one-element tensor and returns its value.
    pub fn item(self) -> Result<f32> {
        if self.shape.numel() != 1 {
            bail!(Shape, "item() needs a tensor of one value, got shape {}", self.shape);
        }
        Ok(self.finish()?[0])
    }
}
