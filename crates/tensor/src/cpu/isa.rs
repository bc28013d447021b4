//! Which instruction-set path the CPU kernels take: the widest this CPU has, or a narrower one
//! named by `CONVNET_ISA` (`avx512`, `avx2` or `portable`), so that every path can be run and
//! tested on one machine.

/// An instruction-set path of the CPU kernels, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Code compiled for the baseline target, with `matrixmultiply` for products: any CPU.
    Portable,
    /// Our AVX2 + FMA GEMM, and 8-lane builds of the Winograd transforms.
    Avx2,
    /// Our AVX-512 GEMM, max pooling and Winograd transforms.
    Avx512,
}

impl Isa {
    /// The name `CONVNET_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The widest path this CPU supports.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if super::gemm_avx512::available() {
                return Isa::Avx512;
            }
            if super::gemm_avx2::available() {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// The path for a `CONVNET_ISA` value on a CPU whose widest path is `detected`: the one
    /// asked for when the CPU has it, else an explanation of why not.
    pub fn choose(requested: Option<&str>, detected: Isa) -> Result<Isa, String> {
        let Some(name) = requested else { return Ok(detected) };
        let wanted = [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .find(|isa| isa.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("CONVNET_ISA={name:?} is not one of avx512, avx2, portable"))?;
        if wanted > detected {
            return Err(format!("CONVNET_ISA={name}: this CPU's widest path is {}", detected.name()));
        }
        Ok(wanted)
    }
}

/// The path every CPU kernel takes in this process, decided once: `CONVNET_ISA` if set and
/// possible here, else the widest the CPU has. An impossible or unknown `CONVNET_ISA` is
/// reported on stderr once and the widest path is used.
pub fn isa() -> Isa {
    static CHOICE: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let requested = std::env::var("CONVNET_ISA").ok();
        let detected = Isa::detected();
        Isa::choose(requested.as_deref(), detected).unwrap_or_else(|why| {
            eprintln!("warning: {why}; using {}", detected.name());
            detected
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_kept_only_where_the_cpu_has_it() {
        assert_eq!(Isa::choose(None, Isa::Avx2), Ok(Isa::Avx2));
        assert_eq!(Isa::choose(Some("portable"), Isa::Avx512), Ok(Isa::Portable));
        assert_eq!(Isa::choose(Some("AVX2"), Isa::Avx512), Ok(Isa::Avx2));
        assert_eq!(Isa::choose(Some("avx512"), Isa::Avx512), Ok(Isa::Avx512));
        let err = Isa::choose(Some("avx512"), Isa::Avx2).unwrap_err();
        assert!(err.contains("widest path is avx2"), "{err}");
        let err = Isa::choose(Some("sse9"), Isa::Avx2).unwrap_err();
        assert!(err.contains("\"sse9\"") && err.contains("avx512, avx2, portable"), "{err}");
    }

    #[test]
    fn the_process_path_is_possible_here() {
        assert!(isa() <= Isa::detected());
    }
}
