//! Speech for calls, rendered on this machine with no cloud service: espeak-ng (run as a
//! program) speaks each piece of a script once, and a call's audio is put together from those
//! pieces. Per voice, the fixed phrases and every character a code may hold are kept for good;
//! brands, payees and amounts go in a bounded cache, so a busy hour does not synthesise the same
//! brand again.

pub mod espeak;
pub mod g711;
pub mod voices;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::domain::message::{Piece, Script, Wording};
pub use espeak::{SpeechError, RATE};

/// 8 kHz 16-bit samples.
pub type Audio = Arc<[i16]>;

/// Silence between the characters of a code: time to write each one down.
const BETWEEN_CHARACTERS_MS: usize = 450;
/// Silence around the code, and at the start and end of the call.
const AROUND_CODE_MS: usize = 300;
/// Samples of brands and payees kept at once (16 MiB of audio; about 1,000 brands).
pub const VALUES_KEPT: usize = 8 << 20;

pub struct Speech {
    /// Phrases and characters: a few thousand at most, kept for good.
    fixed: Mutex<Bounded>,
    values: Mutex<Bounded>,
    /// espeak-ng processes at once.
    running: Semaphore,
}

impl Default for Speech {
    fn default() -> Self {
        Self {
            fixed: Mutex::new(Bounded::new(usize::MAX)),
            values: Mutex::new(Bounded::new(VALUES_KEPT)),
            running: Semaphore::new(2),
        }
    }
}

fn silence(ms: usize) -> impl Iterator<Item = i16> {
    std::iter::repeat_n(0, ms * RATE as usize / 1000)
}

impl Speech {
    /// The call's audio for `script` in `locale`.
    pub async fn render(&self, locale: &str, script: &Script) -> Result<Vec<i16>, SpeechError> {
        let voice = voices::for_locale(locale);
        let (pieces, own) = match &script.wording {
            Wording::BuiltIn(template) => {
                let payment = !script.payee.is_empty() || !script.amount.is_empty();
                let template = if payment { voice.psd2_tts } else { voice.tts }.unwrap_or(template);
                (script.pieces(template), false)
            }
            Wording::Own(text) => (script.own_pieces(text), true),
        };
        let mut audio: Vec<i16> = silence(AROUND_CODE_MS).collect();
        for piece in pieces {
            match piece {
                // A caller's own words are theirs alone: they go in the bounded cache, so that
                // many callers' templates cannot grow the cache that is kept for good.
                Piece::Said(text) if own => {
                    let said = self.value(voice.espeak, text).await?;
                    audio.extend_from_slice(&said);
                }
                Piece::Said(text) => {
                    let said = self.fixed(voice.espeak, text).await?;
                    audio.extend_from_slice(&said);
                }
                // An amount is seldom said twice: it is rendered, not kept.
                Piece::Value(text) if text == script.amount && !text.is_empty() => {
                    let said = self.speak(voice.espeak, text).await?;
                    audio.extend_from_slice(&said);
                }
                Piece::Value(text) => {
                    let said = self.value(voice.espeak, text).await?;
                    audio.extend_from_slice(&said);
                }
                Piece::Code(code) => {
                    audio.extend(silence(AROUND_CODE_MS));
                    for (i, c) in code.chars().enumerate() {
                        if i > 0 {
                            audio.extend(silence(BETWEEN_CHARACTERS_MS));
                        }
                        let said = self.fixed(voice.espeak, &c.to_string()).await?;
                        audio.extend_from_slice(&said);
                    }
                    audio.extend(silence(AROUND_CODE_MS));
                }
            }
        }
        audio.extend(silence(AROUND_CODE_MS));
        Ok(audio)
    }

    /// Renders what every call says (each locale's phrases, normal and PSD2, and the digits)
    /// ahead of the first calls, so that a burst of calls does not wait for espeak-ng.
    pub async fn warm(&self) -> Result<(), SpeechError> {
        for texts in crate::domain::texts::LOCALE_TEXTS {
            let voice = voices::for_locale(texts.tag);
            let script = Script::built_in(texts.tts, "", "", "", "0123456789");
            let templates = [
                voice.tts.unwrap_or(texts.tts),
                voice.psd2_tts.unwrap_or(texts.psd2_tts),
            ];
            for template in templates {
                for piece in script.pieces(template) {
                    if let Piece::Said(text) = piece {
                        self.fixed(voice.espeak, text).await?;
                    }
                }
            }
            for c in script.code.chars() {
                self.fixed(voice.espeak, &c.to_string()).await?;
            }
        }
        Ok(())
    }

    async fn fixed(&self, voice: &'static str, text: &str) -> Result<Audio, SpeechError> {
        self.cached(&self.fixed, voice, text).await
    }

    async fn value(&self, voice: &'static str, text: &str) -> Result<Audio, SpeechError> {
        self.cached(&self.values, voice, text).await
    }

    /// `text` in `voice` from `cache`, rendered and kept there when it is not yet.
    async fn cached(
        &self,
        cache: &Mutex<Bounded>,
        voice: &'static str,
        text: &str,
    ) -> Result<Audio, SpeechError> {
        let key = (voice, text.to_owned());
        if let Some(audio) = cache.lock().expect("not poisoned").get(&key) {
            return Ok(audio);
        }
        let audio = self.speak(voice, text).await?;
        cache
            .lock()
            .expect("not poisoned")
            .insert(key, audio.clone());
        Ok(audio)
    }

    async fn speak(&self, voice: &str, text: &str) -> Result<Audio, SpeechError> {
        if text.trim().is_empty() {
            return Ok(Arc::from(Vec::new()));
        }
        let _turn = self.running.acquire().await.expect("never closed");
        Ok(Arc::from(espeak::speak(voice, text).await?))
    }

    /// How many pieces are kept: (fixed, values).
    pub fn kept(&self) -> (usize, usize) {
        (
            self.fixed.lock().expect("not poisoned").map.len(),
            self.values.lock().expect("not poisoned").map.len(),
        )
    }
}

/// A map of audio that forgets its oldest entries when it holds more than `capacity` samples.
struct Bounded {
    capacity: usize,
    samples: usize,
    map: HashMap<(&'static str, String), Audio>,
    order: VecDeque<(&'static str, String)>,
}

impl Bounded {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            samples: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &(&'static str, String)) -> Option<Audio> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: (&'static str, String), audio: Audio) {
        self.samples += audio.len();
        match self.map.insert(key.clone(), audio) {
            Some(old) => self.samples -= old.len(),
            None => self.order.push_back(key),
        }
        while self.samples > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.map.remove(&oldest) {
                self.samples -= gone.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounded_cache_forgets_its_oldest_entries_past_its_samples() {
        let mut b = Bounded::new(20);
        let audio: Audio = Arc::from(vec![1i16; 10]);
        for name in ["a", "b", "c"] {
            b.insert(("en", name.into()), audio.clone());
        }
        assert!(b.get(&("en", "a".into())).is_none());
        assert!(b.get(&("en", "b".into())).is_some());
        assert!(b.get(&("en", "c".into())).is_some());
        assert_eq!((b.map.len(), b.samples), (2, 20));
        b.insert(("en", "c".into()), Arc::from(vec![1i16; 5]));
        assert_eq!((b.map.len(), b.samples), (2, 15));
    }
}
