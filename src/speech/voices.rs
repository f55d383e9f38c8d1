//! Which espeak-ng voice speaks each locale, and where a locale's script is reworded for it.
//! espeak-ng 1.51 (Debian 12) has no Australian or Indian English, no Filipino, and without
//! MBROLA (not installed) its Japanese reads only kana and its Mandarin few hanzi: those locales
//! take the nearest voice that speaks, and Japanese and Mandarin scripts are written for the
//! voice (kana; pinyin with tone numbers). `docs/voice.md` lists every choice.

pub struct Voice {
    pub locale: &'static str,
    /// The espeak-ng voice (`espeak-ng --voices`).
    pub espeak: &'static str,
    /// The call script and the PSD2 call script, when the locale's own cannot be spoken.
    pub tts: Option<&'static str>,
    pub psd2_tts: Option<&'static str>,
}

const fn voice(locale: &'static str, espeak: &'static str) -> Voice {
    Voice {
        locale,
        espeak,
        tts: None,
        psd2_tts: None,
    }
}

pub static VOICES: &[Voice] = &[
    voice("ar-xa", "ar"),
    voice("cs-cz", "cs"),
    voice("cy-cy", "cy"),
    voice("cy-gb", "cy"),
    voice("da-dk", "da"),
    voice("de-de", "de"),
    voice("el-gr", "el"),
    // No Australian English voice: British English is the nearest.
    voice("en-au", "en-gb"),
    voice("en-gb", "en-gb"),
    // No Indian English voice: British English.
    voice("en-in", "en-gb"),
    voice("en-us", "en-us"),
    voice("es-es", "es"),
    voice("es-mx", "es-419"),
    voice("es-us", "es-419"),
    voice("fi-fi", "fi"),
    // No Filipino voice: Indonesian reads Filipino's Latin spelling closest.
    voice("fil-ph", "id"),
    // No Canadian French voice: French of France.
    voice("fr-ca", "fr-fr"),
    voice("fr-fr", "fr-fr"),
    voice("hi-in", "hi"),
    voice("hu-hu", "hu"),
    voice("id-id", "id"),
    voice("is-is", "is"),
    voice("it-it", "it"),
    Voice {
        locale: "ja-jp",
        espeak: "ja",
        tts: Some("こんにちわ。{brand}の にんしょう こーどわ、{code}です。もう いちど くりかえします。にんしょう こーどわ、{code}です。"),
        psd2_tts: Some("こんにちわ。{payee}えの {amount}ゆーろの おしはらいを かくにんする こーどわ、{code}です。もう いちど くりかえします。こーどわ、{code}です。"),
    },
    voice("ko-kr", "ko"),
    voice("nb-no", "nb"),
    voice("nl-nl", "nl"),
    voice("pl-pl", "pl"),
    voice("pt-br", "pt-br"),
    voice("pt-pt", "pt"),
    voice("ro-ro", "ro"),
    voice("ru-ru", "ru"),
    voice("sv-se", "sv"),
    voice("th-th", "th"),
    voice("tr-tr", "tr"),
    voice("vi-vn", "vi"),
    voice("yue-cn", "yue"),
    Voice {
        locale: "zh-cn",
        espeak: "cmn-latn-pinyin",
        tts: Some("nin2 hao3. zhe4 shi4 nin2 de {brand} yan4 zheng4 ma3: {code}. zai4 shuo1 yi2 bian4, nin2 de yan4 zheng4 ma3 shi4: {code}."),
        psd2_tts: Some("nin2 hao3. nin2 xiang4 {payee} zhi1 fu4 {amount} ou1 yuan2 de que4 ren4 ma3 shi4: {code}. zai4 shuo1 yi2 bian4, nin2 de que4 ren4 ma3 shi4: {code}."),
    },
    Voice {
        locale: "zh-tw",
        espeak: "cmn-latn-pinyin",
        tts: Some("nin2 hao3. zhe4 shi4 nin2 de {brand} yan4 zheng4 ma3: {code}. zai4 shuo1 yi2 ci4, nin2 de yan4 zheng4 ma3 shi4: {code}."),
        psd2_tts: Some("nin2 hao3. nin2 xiang4 {payee} fu4 kuan3 {amount} ou1 yuan2 de que4 ren4 ma3 shi4: {code}. zai4 shuo1 yi2 ci4, nin2 de que4 ren4 ma3 shi4: {code}."),
    },
    voice("bg-bg", "bg"),
    voice("ee-et", "et"),
    voice("ga-ie", "ga"),
    voice("lv-lv", "lv"),
    voice("lt-lt", "lt"),
    voice("mt-mt", "mt"),
    voice("sk-sk", "sk"),
    voice("sl-si", "sl"),
];

/// The voice for `locale`; British English for a locale without one (none today).
pub fn for_locale(locale: &str) -> &'static Voice {
    VOICES
        .iter()
        .find(|v| v.locale == locale)
        .unwrap_or_else(|| for_locale("en-gb"))
}
