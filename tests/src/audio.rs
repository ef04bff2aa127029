//! Audio for the tests: G.711 µ-law and A-law coding, tone generation, and a Goertzel tone
//! detector, so that a test can tell which tone a recording or an RTP stream carries.

use std::f64::consts::PI;

/// Encodes a 16-bit sample as G.711 µ-law (ITU-T G.711, the usual segment algorithm).
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = value.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && value & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (value >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decodes a G.711 µ-law byte.
pub fn ulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let sign = byte & 0x80;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Decodes a G.711 A-law byte.
pub fn alaw_decode(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let sign = byte & 0x80;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if sign != 0 { magnitude } else { -magnitude }) as i16
}

/// A sine tone, sample by sample.
#[derive(Debug, Clone)]
pub struct Tone {
    frequency: f64,
    rate: f64,
    index: u64,
}

impl Tone {
    /// A tone of `frequency` Hz sampled at `rate` Hz.
    pub fn new(frequency: f64, rate: u32) -> Tone {
        Tone {
            frequency,
            rate: f64::from(rate),
            index: 0,
        }
    }

    /// The next `count` samples, at about a third of full scale.
    pub fn samples(&mut self, count: usize) -> Vec<i16> {
        (0..count)
            .map(|_| {
                let t = self.index as f64 / self.rate;
                self.index += 1;
                (10_000.0 * (2.0 * PI * self.frequency * t).sin()) as i16
            })
            .collect()
    }
}

/// The power of `frequency` in `samples` (Goertzel).
pub fn goertzel(samples: &[i16], rate: u32, frequency: f64) -> f64 {
    let k = 2.0 * (2.0 * PI * frequency / f64::from(rate)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for sample in samples {
        let s0 = f64::from(*sample) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

/// Which of `candidates` is strongest in `samples`, with how many times stronger it is than
/// the next one.
pub fn dominant(samples: &[i16], rate: u32, candidates: &[f64]) -> (f64, f64) {
    let mut powers: Vec<(f64, f64)> = candidates
        .iter()
        .map(|frequency| (*frequency, goertzel(samples, rate, *frequency)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = powers.first().copied().unwrap_or((0.0, 0.0));
    let next = powers.get(1).map_or(0.0, |p| p.1);
    (
        best.0,
        if next > 0.0 {
            best.1 / next
        } else {
            f64::INFINITY
        },
    )
}

/// The tone frequencies the tests use, and a few others a detector compares them with.
pub const PROBES: [f64; 7] = [300.0, 440.0, 700.0, 1000.0, 1500.0, 2500.0, 3100.0];

/// Reads the samples of a 16-bit PCM WAV file (the first channel) and its sample rate.
pub fn read_wav(path: &std::path::Path) -> std::io::Result<(Vec<i16>, u32)> {
    let data = std::fs::read(path)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 16-bit PCM WAV");
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err(invalid());
    }
    let (mut rate, mut channels, mut position) = (0u32, 1usize, 12usize);
    while position + 8 <= data.len() {
        let id = &data[position..position + 4];
        let size = u32::from_le_bytes([
            data[position + 4],
            data[position + 5],
            data[position + 6],
            data[position + 7],
        ]) as usize;
        let body = position + 8;
        if id == b"fmt " && body + 16 <= data.len() {
            channels = usize::from(u16::from_le_bytes([data[body + 2], data[body + 3]])).max(1);
            rate = u32::from_le_bytes([
                data[body + 4],
                data[body + 5],
                data[body + 6],
                data[body + 7],
            ]);
        }
        if id == b"data" {
            // A writer that has not closed its file yet leaves the size 0 (or a
            // placeholder): what is on disk is then the data read so far.
            let end = if size == 0 || size == u32::MAX as usize {
                data.len()
            } else {
                (body + size).min(data.len())
            };
            let samples = data[body..end]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
                .step_by(channels)
                .collect();
            return Ok((samples, rate));
        }
        position = body + size + size % 2;
    }
    Err(invalid())
}

/// Writes mono 16-bit PCM samples as a WAV file.
pub fn write_wav(path: &std::path::Path, samples: &[i16], rate: u32) -> std::io::Result<()> {
    let bytes = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + bytes).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&bytes.to_le_bytes());
    for sample in samples {
        out.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(path, out)
}

/// The stretches of a recording that carry sound (20 ms blocks above a small level).
pub fn voiced(samples: &[i16], rate: u32) -> Vec<i16> {
    let block = (rate / 50) as usize;
    samples
        .chunks(block.max(1))
        .filter(|chunk| {
            let energy: f64 = chunk.iter().map(|s| f64::from(*s).powi(2)).sum();
            (energy / chunk.len() as f64).sqrt() > 200.0
        })
        .flatten()
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_and_tones_are_found() {
        for sample in [-32_000i16, -1000, -1, 0, 1, 1000, 32_000] {
            let back = ulaw_decode(ulaw_encode(sample));
            assert!(
                (i32::from(back) - i32::from(sample)).abs() <= i32::from(sample).abs() / 16 + 8
            );
        }
        let mut tone = Tone::new(1000.0, 8000);
        let samples: Vec<i16> = tone
            .samples(8000)
            .into_iter()
            .map(|s| ulaw_decode(ulaw_encode(s)))
            .collect();
        let (frequency, ratio) = dominant(&samples, 8000, &PROBES);
        assert_eq!(frequency, 1000.0);
        assert!(ratio > 100.0);
        assert_eq!(alaw_decode(0xd5), 8);
    }
}
