//! Portable CPU numerics: which vector instructions libtorch's CPU kernels may use.
//!
//! ATen picks its kernels (AVX-512, AVX2, …), oneDNN its convolutions and MKL its matrix
//! products by the CPU they run on, and the float results of those code paths differ in the last
//! bits. Training amplifies the difference: the same seed and commit gave a backdoor ASR of
//! 99.56% on an AVX2 machine and 33.33% on an AVX-512 one. [`CpuKernels::Portable`] (the
//! default) pins all three to AVX2 before libtorch's first operation, so the same seed gives the
//! same numbers on every x86-64 CPU with AVX2; [`CpuKernels::Native`] lets each library pick
//! the best for the CPU (faster where AVX-512 exists: bench/RESULTS.md measures the cost).
//! A variable the user has set already is kept as it is. CUDA kernels are not affected.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// What the CPU kernels may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuKernels {
    /// AVX2 code paths everywhere: the same results on every x86-64 CPU with AVX2.
    #[default]
    Portable,
    /// Whatever each library picks for this CPU.
    Native,
}

impl CpuKernels {
    pub fn label(self) -> &'static str {
        match self {
            CpuKernels::Portable => "portable",
            CpuKernels::Native => "native",
        }
    }

    /// `portable` or `native` (e.g. from `--cpu-kernels` or `FEDSENTRY_CPU_KERNELS`).
    /// The kernels `$FEDSENTRY_CPU_KERNELS` asks for (portable when unset), as `fedsentry`
    /// reads them: a program driving the library pins these to get the CLI's numbers.
    pub fn from_env() -> crate::Result<CpuKernels> {
        match std::env::var(ENV) {
            Err(_) => Ok(CpuKernels::default()),
            Ok(v) => CpuKernels::parse(&v).ok_or_else(|| {
                crate::Error::param(ENV, format!("must be `portable` or `native`, got `{v}`"))
            }),
        }
    }

    pub fn parse(s: &str) -> Option<CpuKernels> {
        match s {
            "portable" => Some(CpuKernels::Portable),
            "native" => Some(CpuKernels::Native),
            _ => None,
        }
    }
}

/// The variables each library reads when it first dispatches, and their AVX2 values.
pub const PINS: [(&str, &str); 3] = [
    ("ATEN_CPU_CAPABILITY", "avx2"),
    ("ONEDNN_MAX_CPU_ISA", "AVX2"),
    // MKL's conditional numerical reproducibility: AVX2 code paths, the same on any AVX2 CPU.
    ("MKL_CBWR", "AVX2"),
];

/// The environment variable that chooses the mode when no flag does.
pub const ENV: &str = "FEDSENTRY_CPU_KERNELS";

/// What a run used: the mode and the value of each pinned variable (absent: the library chose).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Numerics {
    pub cpu_kernels: CpuKernels,
    pub aten_cpu_capability: Option<String>,
    pub onednn_max_cpu_isa: Option<String>,
    pub mkl_cbwr: Option<String>,
}

impl Numerics {
    /// Short label for cache keys: the mode and any variable that departs from it.
    pub fn key(&self) -> String {
        let vars = [
            &self.aten_cpu_capability,
            &self.onednn_max_cpu_isa,
            &self.mkl_cbwr,
        ];
        let mut parts = vec![self.cpu_kernels.label().to_string()];
        parts.extend(vars.iter().map(|v| v.as_deref().unwrap_or("-").to_string()));
        parts.join(",")
    }
}

static CHOSEN: OnceLock<CpuKernels> = OnceLock::new();

/// Sets the mode for this process: in `Portable` mode, every variable of [`PINS`] not set
/// already is set to its AVX2 value. The first call wins.
///
/// # Safety
/// It writes the process environment: call it before any other thread starts and before
/// libtorch's first operation (the start of `main`).
pub unsafe fn pin(kernels: CpuKernels) -> Numerics {
    let kernels = *CHOSEN.get_or_init(|| kernels);
    if kernels == CpuKernels::Portable {
        for (var, value) in PINS {
            if std::env::var_os(var).is_none() {
                // SAFETY: the caller guarantees no other thread runs yet.
                unsafe { std::env::set_var(var, value) };
            }
        }
    }
    current()
}

/// The mode chosen for this process ([`pin`]; `Native` when nothing pinned it, since the
/// libraries then pick for themselves) and the variables in effect.
pub fn current() -> Numerics {
    let var = |name: &str| std::env::var(name).ok();
    Numerics {
        cpu_kernels: CHOSEN.get().copied().unwrap_or(CpuKernels::Native),
        aten_cpu_capability: var(PINS[0].0),
        onednn_max_cpu_isa: var(PINS[1].0),
        mkl_cbwr: var(PINS[2].0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_label() {
        for k in [CpuKernels::Portable, CpuKernels::Native] {
            assert_eq!(CpuKernels::parse(k.label()), Some(k));
        }
        assert_eq!(CpuKernels::parse("avx512"), None);
        let n = Numerics {
            cpu_kernels: CpuKernels::Portable,
            aten_cpu_capability: Some("avx2".into()),
            onednn_max_cpu_isa: Some("AVX2".into()),
            mkl_cbwr: None,
        };
        assert_eq!(n.key(), "portable,avx2,AVX2,-");
    }
}
