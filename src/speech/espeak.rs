//! espeak-ng run as a program (libespeak-ng is GPL-3; verifyd only runs it): text in, WAV out,
//! turned into 8 kHz 16-bit samples for the telephone.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

pub const PROGRAM: &str = "espeak-ng";
/// Words per minute: a little slower than espeak-ng's 175, for a telephone line.
const SPEED: &str = "150";
pub const RATE: u32 = 8_000;

#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    #[error("espeak-ng could not be run ({0}); install it (Debian: apt-get install espeak-ng)")]
    Missing(String),
    #[error("espeak-ng failed: {0}")]
    Failed(String),
    #[error("espeak-ng wrote no audio we can read: {0}")]
    BadWav(&'static str),
}

/// The version line of the installed espeak-ng, or why it cannot be run.
pub async fn check() -> Result<String, SpeechError> {
    let out = tokio::process::Command::new(PROGRAM)
        .arg("--version")
        .output()
        .await
        .map_err(|e| SpeechError::Missing(e.to_string()))?;
    if !out.status.success() {
        return Err(SpeechError::Missing(format!("exit {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `text` spoken by `voice`, at 8 kHz. The text goes on stdin, never on the command line.
pub async fn speak(voice: &str, text: &str) -> Result<Vec<i16>, SpeechError> {
    let mut child = tokio::process::Command::new(PROGRAM)
        .args(["-v", voice, "-s", SPEED, "--stdin", "--stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SpeechError::Missing(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = text.to_owned();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| SpeechError::Failed(e.to_string()))?;
    let _ = writer.await;
    if !out.status.success() {
        return Err(SpeechError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let (rate, samples) = read_wav(&out.stdout)?;
    Ok(resample(&samples, rate, RATE))
}

/// The sample rate and 16-bit mono samples of a WAV file as espeak-ng writes it (its sizes may
/// say "unknown" when it writes to a pipe: the data runs to the end).
pub fn read_wav(bytes: &[u8]) -> Result<(u32, Vec<i16>), SpeechError> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(SpeechError::BadWav("not a RIFF WAVE file"));
    }
    let mut at = 12;
    let mut rate = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body = at + 8;
        if id == b"fmt " {
            let fmt = bytes
                .get(body..body + 16)
                .ok_or(SpeechError::BadWav("short fmt chunk"))?;
            let format = u16::from_le_bytes([fmt[0], fmt[1]]);
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if format != 1 || channels != 1 || bits != 16 {
                return Err(SpeechError::BadWav("not 16-bit mono PCM"));
            }
            rate = Some(u32::from_le_bytes(fmt[4..8].try_into().expect("4 bytes")));
        } else if id == b"data" {
            let rate = rate.ok_or(SpeechError::BadWav("data before fmt"))?;
            let end = body.saturating_add(size).min(bytes.len());
            let samples = bytes[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate, samples));
        }
        at = body.saturating_add(size + size % 2);
    }
    Err(SpeechError::BadWav("no data chunk"))
}

/// Taps on each side of a resampled point.
const HALF: usize = 16;

/// `samples` at `from` Hz as samples at `to` Hz: windowed-sinc interpolation, low-passed below
/// the lower rate's Nyquist frequency, so a 22 kHz voice does not alias into the 8 kHz call.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let step = f64::from(from) / f64::from(to);
    // Cut-off as a fraction of the input rate, a little under the output's Nyquist frequency.
    let cutoff = 0.45 * f64::from(to.min(from)) / f64::from(from);
    let count = (samples.len() as f64 / step).floor() as usize;
    (0..count)
        .map(|n| {
            let t = n as f64 * step;
            let centre = t.floor() as isize;
            let mut sum = 0.0;
            for k in (centre - HALF as isize + 1)..=(centre + HALF as isize) {
                let Some(&x) = usize::try_from(k).ok().and_then(|k| samples.get(k)) else {
                    continue;
                };
                let d = t - k as f64;
                let w = blackman((d / HALF as f64).abs());
                sum += f64::from(x) * 2.0 * cutoff * sinc(2.0 * cutoff * d) * w;
            }
            sum.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let p = std::f64::consts::PI * x;
        p.sin() / p
    }
}

/// A Blackman window over |x| in 0..=1 (0 beyond).
fn blackman(x: f64) -> f64 {
    if x >= 1.0 {
        0.0
    } else {
        let a = std::f64::consts::PI * (1.0 - x);
        0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<i16> {
        (0..(f64::from(rate) * secs) as usize)
            .map(|i| {
                (10_000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn a_voice_band_tone_keeps_its_level_and_one_above_4_khz_is_removed() {
        let kept = resample(&tone(1_000.0, 22_050, 1.0), 22_050, 8_000);
        assert_eq!(kept.len(), 8_000);
        let level = rms(&kept[100..7_900]) / (10_000.0 / 2f64.sqrt());
        assert!((0.95..1.05).contains(&level), "{level}");
        let gone = resample(&tone(6_000.0, 22_050, 1.0), 22_050, 8_000);
        let level = rms(&gone[100..7_900]) / (10_000.0 / 2f64.sqrt());
        assert!(level < 0.02, "a 6 kHz tone would alias to 2 kHz: {level}");
    }

    #[test]
    fn a_wav_from_a_pipe_with_unknown_sizes_is_read_to_its_end() {
        let mut wav = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&22_050u32.to_le_bytes());
        wav.extend_from_slice(&44_100u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data\xff\xff\xff\x7f");
        wav.extend_from_slice(&[1, 0, 0xff, 0xff]);
        assert_eq!(read_wav(&wav).unwrap(), (22_050, vec![1, -1]));
        assert!(read_wav(b"not a wav").is_err());
    }
}
