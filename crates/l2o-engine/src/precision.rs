//! Arithmetic precision of the device kernels. Host code always speaks f64; buffers hold `Real` = f32 or f64.

use std::fmt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    F64,
}

impl Precision {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F64 => 8,
        }
    }

    /// Unit roundoff of the device arithmetic.
    pub fn eps(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }

    /// Host f64 values as the device's bytes.
    pub fn encode(self, v: &[f64]) -> Vec<u8> {
        match self {
            Precision::F32 => {
                let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                bytemuck::cast_slice(&f).to_vec()
            }
            Precision::F64 => bytemuck::cast_slice(v).to_vec(),
        }
    }

    /// Device bytes as host f64 values.
    pub fn decode(self, bytes: &[u8]) -> Vec<f64> {
        match self {
            Precision::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
                .into_iter()
                .map(f64::from)
                .collect(),
            Precision::F64 => bytemuck::pod_collect_to_vec::<u8, f64>(bytes),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "single" => Ok(Precision::F32),
            "f64" | "double" => Ok(Precision::F64),
            _ => anyhow::bail!("unknown precision {s:?}: use f32 or f64"),
        }
    }
}
