//! Speech with the real espeak-ng (installed by .ci/run): every locale's call script is spoken
//! by its voice, and a call's audio is put together from pieces rendered once.

use std::process::Command;

use verifyd::domain::locale::{Locale, PSD2_LOCALES, STANDARD_LOCALES};
use verifyd::domain::message::{render, Piece, Script, Wording};
use verifyd::domain::template::TemplateText;
use verifyd::domain::verification::{DeliveryOrder, Purpose};
use verifyd::domain::{Channel, Destination, EventId, PhoneNumber, RequestId};
use verifyd::speech::{voices, Speech, RATE};

fn script(locale: &str, purpose: Purpose, code: &str) -> Script {
    let order = DeliveryOrder {
        event_id: EventId::from_bytes([1; 8]),
        request_id: RequestId::from_bytes([2; 16]),
        channel: Channel::Voice,
        to: Destination::Phone(PhoneNumber::parse("447700100123", None).unwrap()),
        from: None,
        app_hash: None,
        purpose,
        locale: Locale::from_tag(locale).unwrap(),
        sealed_pin: vec![],
        created_at: chrono::Utc::now(),
        pin_expires_at: None,
        text: None,
    };
    render(&order, code).script.unwrap()
}

fn brand() -> Purpose {
    Purpose::Brand {
        brand: String::new(),
    }
}

fn payment() -> Purpose {
    Purpose::Payment {
        payee: String::new(),
        amount: "48.00".into(),
    }
}

/// What espeak-ng says for `text`, as phonemes.
fn phonemes(voice: &str, text: &str) -> String {
    let out = Command::new("espeak-ng")
        .args(["-q", "-x", "-v", voice, text])
        .output()
        .expect("espeak-ng runs (Debian: apt-get install espeak-ng)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_locales_call_scripts_are_spoken_by_its_voice_not_spelled_as_foreign_letters() {
    let mut checked = 0;
    for (locales, purpose) in [
        (&STANDARD_LOCALES[..], brand as fn() -> Purpose),
        (&PSD2_LOCALES[..], payment),
    ] {
        for &locale in locales {
            let script = script(locale, purpose(), "4815");
            let voice = voices::for_locale(locale);
            let template = match purpose() {
                Purpose::Brand { .. } => voice.tts,
                Purpose::Payment { .. } => voice.psd2_tts,
            }
            .unwrap_or(match script.wording {
                Wording::BuiltIn(template) => template,
                Wording::Own(_) => unreachable!("a delivery without its own words"),
            });
            let words: Vec<String> = script
                .pieces(template)
                .into_iter()
                .map(|p| match p {
                    Piece::Said(s) | Piece::Value(s) => s.to_owned(),
                    Piece::Code(c) => c.to_owned(),
                })
                .collect();
            let said = phonemes(voice.espeak, &words.concat());
            // espeak-ng names a character it cannot read: "Chinese letter", "Japanese letter".
            for foreign in ["tS'aIni:z", "dZ'ap@ni:z", "l'Et@", "l'et@"] {
                assert!(
                    !said.contains(foreign),
                    "{locale} ({}) spells characters it cannot read: {said}",
                    voice.espeak
                );
            }
            assert!(said.trim().len() > 20, "{locale}: {said}");
            checked += 1;
        }
    }
    assert_eq!(checked, 39 + 21);
}

#[test]
fn every_voice_of_the_table_is_installed() {
    let out = Command::new("espeak-ng").arg("--voices").output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    let installed: Vec<&str> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    for voice in voices::VOICES {
        assert!(
            installed.contains(&voice.espeak),
            "{} ({})",
            voice.espeak,
            voice.locale
        );
    }
    for locale in STANDARD_LOCALES.iter().chain(PSD2_LOCALES.iter()) {
        assert!(
            voices::VOICES.iter().any(|v| v.locale == *locale),
            "{locale}"
        );
    }
}

fn energy(audio: &[i16]) -> f64 {
    (audio.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / audio.len() as f64).sqrt()
}

#[tokio::test]
async fn a_call_is_put_together_from_pieces_rendered_once() {
    let speech = Speech::default();
    let mut first = script("en-gb", brand(), "4815");
    first.brand = "AcmeInc".into();
    let audio = speech.render("en-gb", &first).await.unwrap();
    let secs = audio.len() as f64 / f64::from(RATE);
    assert!((6.0..30.0).contains(&secs), "{secs} s");
    assert!(energy(&audio) > 300.0, "it is not silence");
    let (fixed, values) = speech.kept();
    assert_eq!(values, 1, "the brand");

    // The same call again is the same audio, and renders nothing new.
    assert_eq!(speech.render("en-gb", &first).await.unwrap(), audio);
    assert_eq!(speech.kept(), (fixed, values));

    // Another code with the same digits and the same brand: still nothing new.
    let mut second = first.clone();
    second.code = "5184".into();
    let other = speech.render("en-gb", &second).await.unwrap();
    assert_eq!(speech.kept(), (fixed, values));
    assert_ne!(other, audio);
    assert_eq!(other.len(), audio.len(), "the same pieces in another order");

    // A new digit is one new piece.
    second.code = "5189".into();
    speech.render("en-gb", &second).await.unwrap();
    assert_eq!(speech.kept(), (fixed + 1, values));
}

#[tokio::test]
async fn a_code_with_letters_is_read_one_character_at_a_time() {
    let speech = Speech::default();
    let mut call = script("en-gb", brand(), "4815");
    let digits = speech.render("en-gb", &call).await.unwrap();
    let (fixed, values) = speech.kept();
    call.code = "4K1X".into();
    let letters = speech.render("en-gb", &call).await.unwrap();
    assert_eq!(speech.kept(), (fixed + 2, values), "K and X, a piece each");
    assert_ne!(letters, digits);
}

#[tokio::test]
async fn a_call_in_a_templates_words_keeps_them_in_the_bounded_cache() {
    let speech = Speech::default();
    let mut call = script("en-gb", brand(), "4815");
    call.brand = "AcmeInc".into();
    call.wording =
        Wording::Own(TemplateText::parse("Hello from ${brand}. Your code: ${code}.").unwrap());
    let audio = speech.render("en-gb", &call).await.unwrap();
    assert!(energy(&audio) > 300.0, "it is not silence");
    // Kept for good: only the four digits. Bounded: the three phrases and the brand.
    assert_eq!(speech.kept(), (4, 4));
}

#[tokio::test]
async fn japanese_and_mandarin_calls_use_their_reworded_scripts() {
    let speech = Speech::default();
    for locale in ["ja-jp", "zh-cn", "zh-tw"] {
        let audio = speech
            .render(locale, &script(locale, brand(), "1234"))
            .await
            .unwrap();
        let secs = audio.len() as f64 / f64::from(RATE);
        assert!((5.0..30.0).contains(&secs), "{locale}: {secs} s");
    }
}

#[tokio::test]
async fn warming_renders_every_locales_phrases_and_digits_ahead_of_calls() {
    let speech = Speech::default();
    speech.warm().await.unwrap();
    let (fixed, _) = speech.kept();
    for locale in ["en-gb", "ja-jp", "de-de", "zh-tw"] {
        let mut call = script(locale, brand(), "9021");
        call.brand = "AcmeInc".into();
        speech.render(locale, &call).await.unwrap();
        let mut payment = script(locale, payment(), "7715");
        payment.payee = "Acme Shop".into();
        speech.render(locale, &payment).await.unwrap();
    }
    assert_eq!(speech.kept().0, fixed, "nothing fixed left to render");
}
