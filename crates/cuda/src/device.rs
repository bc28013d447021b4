//! Finding a usable GPU without panicking: cudarc panics when `libcuda` is absent, so its
//! presence and the driver's version are checked first.
use cudarc::driver::{result, sys, CudaContext};
use std::sync::Arc;
use tensor::{Error, Result};

/// The oldest driver this backend runs on: CUDA 12.2, drivers R535 and up. The embedded PTX
/// needs only ISA 7.0 (CUDA 11.0, `tools/gen_ptx.py`); the floor is the driver API the backend
/// calls through cudarc's 12.x bindings, which are not used on anything older.
const MIN_DRIVER: i32 = 12020;

fn device_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Device(format!("{what}: {e}"))
}

/// Opens device `ordinal`, or says why not (no driver, no device, driver too old).
pub(crate) fn open(ordinal: usize) -> Result<(Arc<CudaContext>, String)> {
    // SAFETY: only tries to load libcuda; no symbol of it is called yet.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::Device("no NVIDIA driver found (libcuda.so could not be loaded)".into()));
    }
    // cudarc may still panic on a driver that lacks a symbol it binds; keep that an error.
    std::panic::catch_unwind(|| -> Result<(Arc<CudaContext>, String)> {
        result::init().map_err(|e| device_error("cuInit failed", e))?;
        let mut version = 0i32;
        // SAFETY: the driver is loaded and initialised; it writes one int to a live local.
        let status = unsafe { sys::cuDriverGetVersion(&mut version) };
        if status != sys::CUresult::CUDA_SUCCESS {
            return Err(device_error("cuDriverGetVersion failed", format!("{status:?}")));
        }
        if version < MIN_DRIVER {
            return Err(Error::Device(format!(
                "the NVIDIA driver supports CUDA {}.{}, this backend needs 12.2 or newer (driver 535+)",
                version / 1000,
                version % 1000 / 10
            )));
        }
        let count = result::device::get_count().map_err(|e| device_error("cannot count CUDA devices", e))?;
        if ordinal as i32 >= count {
            return Err(Error::Device(format!("CUDA device {ordinal} requested, {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| device_error("cannot create a CUDA context", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok((ctx, name))
    })
    .unwrap_or_else(|_| {
        Err(Error::Device("the CUDA driver library failed to load (incompatible libcuda?)".into()))
    })
}

/// Why no GPU can be used here, or `None` when device 0 works. Tests print this when skipping.
pub fn probe() -> Option<String> {
    match open(0) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}
