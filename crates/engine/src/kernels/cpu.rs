//! Which vector instructions the engine's kernels run: the widest the processor has, unless
//! the operator caps them (`FACELOCK_MAX_CPU_ISA`) to run the path another machine would, for
//! instance to reproduce its figures or to compare paths.

use std::sync::OnceLock;

/// An instruction set the kernels are written for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// What the build targets everywhere (SSE2 on x86-64, NEON on ARM).
    Baseline,
    /// AVX2 with fused multiply-add.
    Avx2,
    /// AVX-512 (the foundation instructions; the 1:N scan also wants BW and VNNI).
    Avx512,
}

impl Isa {
    pub const NAMES: &'static str = "baseline, avx2, avx512";

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "baseline" => Some(Self::Baseline),
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The widest set this processor runs.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self::Avx2;
            }
        }
        Self::Baseline
    }
}

static CHOSEN: OnceLock<Isa> = OnceLock::new();

/// Caps the kernels at `cap` (the processor's own set when that is narrower). It holds for the
/// whole process, so it must come before the first kernel runs: once one has, the choice is
/// made, and the set in use is returned either way.
pub fn limit(cap: Isa) -> Isa {
    *CHOSEN.get_or_init(|| cap.min(Isa::detected()))
}

/// The set the kernels run.
pub fn isa() -> Isa {
    *CHOSEN.get_or_init(Isa::detected)
}

/// The set the kernels run, in words, saying when it is capped below the processor's.
pub fn summary() -> String {
    let (running, detected) = (isa(), Isa::detected());
    if running < detected {
        format!(
            "{} (capped by FACELOCK_MAX_CPU_ISA; this processor runs {})",
            running.as_str(),
            detected.as_str()
        )
    } else {
        running.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_sets_are_ordered() {
        for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::parse(isa.as_str()), Some(isa));
        }
        assert_eq!(Isa::parse(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("sse4"), None);
        assert!(Isa::Baseline < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        assert!(isa() <= Isa::detected());
    }
}
