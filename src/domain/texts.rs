//! Message templates per locale, written for verifyd (not copied from any vendor).
//!
//! Placeholders: `{brand}`, `{code}`, `{payee}`, `{amount}`. For SMS `{code}` becomes the code as typed
//! (e.g. `4815`); for voice scripts it becomes the code read one character at a time (`4, 8, 1, 5`).

/// Templates for one locale tag.
pub(crate) struct LocaleTexts {
    /// The lowercase tag as the API spells it, e.g. `en-us`.
    pub(crate) tag: &'static str,
    /// SMS for a normal verification. Placeholders: `{brand}`, `{code}`.
    pub(crate) sms: &'static str,
    /// Voice (text-to-speech) script for a normal verification. Placeholders: `{brand}`, `{code}` (twice: the script says the code, then repeats it).
    pub(crate) tts: &'static str,
    /// SMS for a PSD2 payment confirmation. Placeholders: `{payee}`, `{amount}` (already formatted, e.g. `48.00`, currency is euro), `{code}`.
    pub(crate) psd2_sms: &'static str,
    /// Voice script for a PSD2 payment confirmation. Same placeholders; `{code}` twice.
    pub(crate) psd2_tts: &'static str,
}

pub(crate) static LOCALE_TEXTS: &[LocaleTexts] = &[
    // Modern Standard Arabic.
    LocaleTexts {
        tag: "ar-xa",
        sms: "{brand}: رمز التحقق الخاص بك هو {code}",
        tts: "مرحبًا. هذا رمز التحقق الخاص بك من {brand}: {code}. أكرر، رمزك هو: {code}.",
        psd2_sms: "رمز تأكيد دفعتك بمبلغ {amount} EUR إلى {payee} هو {code}",
        psd2_tts: "مرحبًا. رمز تأكيد دفعتك بمبلغ {amount} يورو إلى {payee} هو: {code}. أكرر، رمزك هو: {code}.",
    },
    // Czech.
    LocaleTexts {
        tag: "cs-cz",
        sms: "{brand}: váš ověřovací kód je {code}",
        tts: "Dobrý den. Toto je váš ověřovací kód pro {brand}: {code}. Ještě jednou, váš kód je: {code}.",
        psd2_sms: "Váš kód pro potvrzení platby {amount} EUR příjemci {payee} je {code}",
        psd2_tts: "Dobrý den. Váš kód pro potvrzení platby {amount} eur příjemci {payee} je: {code}. Ještě jednou, váš kód je: {code}.",
    },
    // Welsh.
    LocaleTexts {
        tag: "cy-cy",
        sms: "{brand}: eich cod dilysu yw {code}",
        tts: "Helo. Dyma eich cod dilysu {brand}: {code}. Unwaith eto, eich cod yw: {code}.",
        psd2_sms: "Eich cod i gadarnhau eich taliad o {amount} EUR i {payee} yw {code}",
        psd2_tts: "Helo. Eich cod i gadarnhau eich taliad o {amount} ewro i {payee} yw: {code}. Unwaith eto, eich cod yw: {code}.",
    },
    // Welsh (United Kingdom).
    LocaleTexts {
        tag: "cy-gb",
        sms: "{brand}: eich cod dilysu yw {code}",
        tts: "Helo. Dyma eich cod dilysu {brand}: {code}. Unwaith eto, eich cod yw: {code}.",
        psd2_sms: "Eich cod i gadarnhau eich taliad o {amount} EUR i {payee} yw {code}",
        psd2_tts: "Helo. Eich cod i gadarnhau eich taliad o {amount} ewro i {payee} yw: {code}. Unwaith eto, eich cod yw: {code}.",
    },
    // Danish.
    LocaleTexts {
        tag: "da-dk",
        sms: "{brand}: din bekræftelseskode er {code}",
        tts: "Hej. Dette er din bekræftelseskode fra {brand}: {code}. Jeg gentager, din kode er: {code}.",
        psd2_sms: "Din kode til at bekræfte din betaling på {amount} EUR til {payee} er {code}",
        psd2_tts: "Hej. Din kode til at bekræfte din betaling på {amount} euro til {payee} er: {code}. Jeg gentager, din kode er: {code}.",
    },
    // German.
    LocaleTexts {
        tag: "de-de",
        sms: "{brand}: Ihr Bestätigungscode lautet {code}",
        tts: "Hallo. Hier ist Ihr Bestätigungscode von {brand}: {code}. Noch einmal, Ihr Code lautet: {code}.",
        psd2_sms: "Ihr Code zur Bestätigung Ihrer Zahlung von {amount} EUR an {payee} lautet {code}",
        psd2_tts: "Hallo. Ihr Code zur Bestätigung Ihrer Zahlung von {amount} Euro an {payee} lautet: {code}. Noch einmal, Ihr Code lautet: {code}.",
    },
    // Greek.
    LocaleTexts {
        tag: "el-gr",
        sms: "{brand}: Ο κωδικός επαλήθευσής σας είναι {code}",
        tts: "Γεια σας. Ο κωδικός επαλήθευσής σας για το {brand} είναι: {code}. Επαναλαμβάνω, ο κωδικός σας είναι: {code}.",
        psd2_sms: "Ο κωδικός επιβεβαίωσης της πληρωμής σας {amount} EUR προς {payee} είναι {code}",
        psd2_tts: "Γεια σας. Ο κωδικός επιβεβαίωσης της πληρωμής σας {amount} ευρώ προς {payee} είναι: {code}. Επαναλαμβάνω, ο κωδικός σας είναι: {code}.",
    },
    // English (Australia).
    LocaleTexts {
        tag: "en-au",
        sms: "{brand}: your verification code is {code}",
        tts: "Hello. This is your {brand} verification code: {code}. Once again, your code is: {code}.",
        psd2_sms: "Your code to confirm your payment of {amount} EUR to {payee} is {code}",
        psd2_tts: "Hello. Your code to confirm your payment of {amount} euros to {payee} is: {code}. Once again, your code is: {code}.",
    },
    // English (United Kingdom).
    LocaleTexts {
        tag: "en-gb",
        sms: "{brand}: your verification code is {code}",
        tts: "Hello. This is your {brand} verification code: {code}. Once again, your code is: {code}.",
        psd2_sms: "Your code to confirm your payment of {amount} EUR to {payee} is {code}",
        psd2_tts: "Hello. Your code to confirm your payment of {amount} euros to {payee} is: {code}. Once again, your code is: {code}.",
    },
    // English (India).
    LocaleTexts {
        tag: "en-in",
        sms: "{brand}: your verification code is {code}",
        tts: "Hello. This is your {brand} verification code: {code}. Once again, your code is: {code}.",
        psd2_sms: "Your code to confirm your payment of {amount} EUR to {payee} is {code}",
        psd2_tts: "Hello. Your code to confirm your payment of {amount} euros to {payee} is: {code}. Once again, your code is: {code}.",
    },
    // English (United States).
    LocaleTexts {
        tag: "en-us",
        sms: "{brand}: your verification code is {code}",
        tts: "Hello. This is your {brand} verification code: {code}. Once again, your code is: {code}.",
        psd2_sms: "Your code to confirm your payment of {amount} EUR to {payee} is {code}",
        psd2_tts: "Hello. Your code to confirm your payment of {amount} euros to {payee} is: {code}. Once again, your code is: {code}.",
    },
    // Spanish (Spain).
    LocaleTexts {
        tag: "es-es",
        sms: "{brand}: tu código de verificación es {code}",
        tts: "Hola. Este es tu código de verificación de {brand}: {code}. Repito, tu código es: {code}.",
        psd2_sms: "Tu código para confirmar el pago de {amount} EUR a {payee} es {code}",
        psd2_tts: "Hola. Tu código para confirmar el pago de {amount} euros a {payee} es: {code}. Repito, tu código es: {code}.",
    },
    // Spanish (Mexico).
    LocaleTexts {
        tag: "es-mx",
        sms: "{brand}: su código de verificación es {code}",
        tts: "Hola. Este es su código de verificación de {brand}: {code}. Una vez más, su código es: {code}.",
        psd2_sms: "Su código para confirmar el pago de {amount} EUR a {payee} es {code}",
        psd2_tts: "Hola. Su código para confirmar el pago de {amount} euros a {payee} es: {code}. Una vez más, su código es: {code}.",
    },
    // Spanish (United States).
    LocaleTexts {
        tag: "es-us",
        sms: "{brand}: su código de verificación es {code}",
        tts: "Hola. Este es su código de verificación de {brand}: {code}. Una vez más, su código es: {code}.",
        psd2_sms: "Su código para confirmar el pago de {amount} EUR a {payee} es {code}",
        psd2_tts: "Hola. Su código para confirmar el pago de {amount} euros a {payee} es: {code}. Una vez más, su código es: {code}.",
    },
    // Finnish.
    LocaleTexts {
        tag: "fi-fi",
        sms: "{brand}: vahvistuskoodisi on {code}",
        tts: "Hei. {brand} lähettää vahvistuskoodisi: {code}. Toistan, koodisi on: {code}.",
        psd2_sms: "Vahvista {amount} EUR maksu saajalle {payee} koodilla {code}",
        psd2_tts: "Hei. Vahvista {amount} euron maksu saajalle {payee} koodilla: {code}. Toistan, koodisi on: {code}.",
    },
    // Filipino.
    LocaleTexts {
        tag: "fil-ph",
        sms: "{brand}: ang iyong verification code ay {code}",
        tts: "Kumusta. Ito ang iyong verification code mula sa {brand}: {code}. Uulitin ko, ang iyong code ay: {code}.",
        psd2_sms: "Ang iyong code para kumpirmahin ang bayad na {amount} EUR sa {payee} ay {code}",
        psd2_tts: "Kumusta. Ang iyong code para kumpirmahin ang bayad na {amount} euro sa {payee} ay: {code}. Uulitin ko, ang iyong code ay: {code}.",
    },
    // French (Canada).
    LocaleTexts {
        tag: "fr-ca",
        sms: "{brand} : votre code de vérification est {code}",
        tts: "Bonjour. Voici votre code de vérification {brand} : {code}. Je répète, votre code est : {code}.",
        psd2_sms: "Votre code pour confirmer votre paiement de {amount} EUR à {payee} est {code}",
        psd2_tts: "Bonjour. Votre code pour confirmer votre paiement de {amount} euros à {payee} est : {code}. Je répète, votre code est : {code}.",
    },
    // French (France).
    LocaleTexts {
        tag: "fr-fr",
        sms: "{brand} : votre code de vérification est {code}",
        tts: "Bonjour. Voici votre code de vérification {brand} : {code}. Je répète, votre code est : {code}.",
        psd2_sms: "Votre code pour confirmer votre paiement de {amount} EUR à {payee} est {code}",
        psd2_tts: "Bonjour. Votre code pour confirmer votre paiement de {amount} euros à {payee} est : {code}. Je répète, votre code est : {code}.",
    },
    // Hindi.
    LocaleTexts {
        tag: "hi-in",
        sms: "{brand}: आपका सत्यापन कोड {code} है",
        tts: "नमस्ते। यह आपका {brand} सत्यापन कोड है: {code}। फिर से, आपका कोड है: {code}।",
        psd2_sms: "{payee} को {amount} EUR के भुगतान की पुष्टि के लिए आपका कोड {code} है",
        psd2_tts: "नमस्ते। {payee} को {amount} यूरो के भुगतान की पुष्टि के लिए आपका कोड है: {code}। फिर से, आपका कोड है: {code}।",
    },
    // Hungarian.
    LocaleTexts {
        tag: "hu-hu",
        sms: "{brand}: az Ön ellenőrző kódja: {code}",
        tts: "Üdvözöljük. Ez az Ön {brand} ellenőrző kódja: {code}. Még egyszer, az Ön kódja: {code}.",
        psd2_sms: "Az Ön {payee} részére szóló, {amount} EUR összegű fizetésének jóváhagyó kódja: {code}",
        psd2_tts: "Üdvözöljük. Az Ön {payee} részére szóló, {amount} eurós fizetésének jóváhagyó kódja: {code}. Még egyszer, az Ön kódja: {code}.",
    },
    // Indonesian.
    LocaleTexts {
        tag: "id-id",
        sms: "{brand}: kode verifikasi Anda adalah {code}",
        tts: "Halo. Ini kode verifikasi {brand} Anda: {code}. Sekali lagi, kode Anda adalah: {code}.",
        psd2_sms: "Kode untuk mengonfirmasi pembayaran {amount} EUR kepada {payee} adalah {code}",
        psd2_tts: "Halo. Kode untuk mengonfirmasi pembayaran {amount} euro kepada {payee} adalah: {code}. Sekali lagi, kode Anda adalah: {code}.",
    },
    // Icelandic.
    LocaleTexts {
        tag: "is-is",
        sms: "{brand}: staðfestingarkóðinn þinn er {code}",
        tts: "Halló. Þetta er staðfestingarkóðinn þinn frá {brand}: {code}. Ég endurtek, kóðinn þinn er: {code}.",
        psd2_sms: "Kóðinn til að staðfesta greiðslu að upphæð {amount} EUR til {payee} er {code}",
        psd2_tts: "Halló. Kóðinn til að staðfesta greiðslu að upphæð {amount} evrur til {payee} er: {code}. Ég endurtek, kóðinn þinn er: {code}.",
    },
    // Italian.
    LocaleTexts {
        tag: "it-it",
        sms: "{brand}: il tuo codice di verifica è {code}",
        tts: "Salve. Questo è il tuo codice di verifica {brand}: {code}. Ripeto, il tuo codice è: {code}.",
        psd2_sms: "Il codice per confermare il pagamento di {amount} EUR a {payee} è {code}",
        psd2_tts: "Salve. Il codice per confermare il pagamento di {amount} euro a {payee} è: {code}. Ripeto, il tuo codice è: {code}.",
    },
    // Japanese.
    LocaleTexts {
        tag: "ja-jp",
        sms: "{brand}の認証コードは{code}です",
        tts: "こんにちは。{brand}の認証コードは、{code}です。もう一度繰り返します。認証コードは、{code}です。",
        psd2_sms: "{payee}への{amount} EURのお支払いを確認するコードは{code}です",
        psd2_tts: "こんにちは。{payee}への{amount}ユーロのお支払いを確認するコードは、{code}です。もう一度繰り返します。コードは、{code}です。",
    },
    // Korean.
    LocaleTexts {
        tag: "ko-kr",
        sms: "{brand} 인증 코드는 {code}입니다",
        tts: "안녕하세요. {brand} 인증 코드는 {code}입니다. 다시 한 번 말씀드립니다. 인증 코드는 {code}입니다.",
        psd2_sms: "{payee}에 대한 {amount} EUR 결제 확인 코드는 {code}입니다",
        psd2_tts: "안녕하세요. {payee}에 대한 {amount}유로 결제 확인 코드는 {code}입니다. 다시 한 번 말씀드립니다. 코드는 {code}입니다.",
    },
    // Norwegian Bokmål.
    LocaleTexts {
        tag: "nb-no",
        sms: "{brand}: bekreftelseskoden din er {code}",
        tts: "Hei. Dette er bekreftelseskoden din fra {brand}: {code}. Jeg gjentar, koden din er: {code}.",
        psd2_sms: "Koden for å bekrefte betalingen din på {amount} EUR til {payee} er {code}",
        psd2_tts: "Hei. Koden for å bekrefte betalingen din på {amount} euro til {payee} er: {code}. Jeg gjentar, koden din er: {code}.",
    },
    // Dutch.
    LocaleTexts {
        tag: "nl-nl",
        sms: "{brand}: je verificatiecode is {code}",
        tts: "Hallo. Dit is je verificatiecode van {brand}: {code}. Nogmaals, je code is: {code}.",
        psd2_sms: "Je code om je betaling van {amount} EUR aan {payee} te bevestigen is {code}",
        psd2_tts: "Hallo. Je code om je betaling van {amount} euro aan {payee} te bevestigen is: {code}. Nogmaals, je code is: {code}.",
    },
    // Polish.
    LocaleTexts {
        tag: "pl-pl",
        sms: "{brand}: Twój kod weryfikacyjny to {code}",
        tts: "Dzień dobry. Oto Twój kod weryfikacyjny {brand}: {code}. Powtarzam, Twój kod to: {code}.",
        psd2_sms: "Kod do potwierdzenia płatności {amount} EUR na rzecz {payee} to {code}",
        psd2_tts: "Dzień dobry. Kod do potwierdzenia płatności {amount} euro na rzecz {payee} to: {code}. Powtarzam, Twój kod to: {code}.",
    },
    // Portuguese (Brazil).
    LocaleTexts {
        tag: "pt-br",
        sms: "{brand}: seu código de verificação é {code}",
        tts: "Olá. Este é o seu código de verificação {brand}: {code}. Repetindo, o seu código é: {code}.",
        psd2_sms: "Seu código para confirmar o pagamento de {amount} EUR para {payee} é {code}",
        psd2_tts: "Olá. Seu código para confirmar o pagamento de {amount} euros para {payee} é: {code}. Repetindo, o seu código é: {code}.",
    },
    // Portuguese (Portugal).
    LocaleTexts {
        tag: "pt-pt",
        sms: "{brand}: o seu código de verificação é {code}",
        tts: "Olá. Este é o seu código de verificação {brand}: {code}. Repito, o seu código é: {code}.",
        psd2_sms: "O seu código para confirmar o pagamento de {amount} EUR a {payee} é {code}",
        psd2_tts: "Olá. O seu código para confirmar o pagamento de {amount} euros a {payee} é: {code}. Repito, o seu código é: {code}.",
    },
    // Romanian.
    LocaleTexts {
        tag: "ro-ro",
        sms: "{brand}: codul de verificare este {code}",
        tts: "Bună ziua. Codul de verificare {brand} este: {code}. Repet, codul este: {code}.",
        psd2_sms: "Codul pentru confirmarea plății de {amount} EUR către {payee} este {code}",
        psd2_tts: "Bună ziua. Codul pentru confirmarea plății de {amount} euro către {payee} este: {code}. Repet, codul este: {code}.",
    },
    // Russian.
    LocaleTexts {
        tag: "ru-ru",
        sms: "{brand}: ваш код подтверждения — {code}",
        tts: "Здравствуйте. Ваш код подтверждения {brand}: {code}. Повторяю, ваш код: {code}.",
        psd2_sms: "Код для подтверждения платежа на сумму {amount} EUR получателю {payee}: {code}",
        psd2_tts: "Здравствуйте. Код для подтверждения платежа на сумму {amount} евро получателю {payee}: {code}. Повторяю, ваш код: {code}.",
    },
    // Swedish.
    LocaleTexts {
        tag: "sv-se",
        sms: "{brand}: din verifieringskod är {code}",
        tts: "Hej. Det här är din verifieringskod från {brand}: {code}. Jag upprepar, din kod är: {code}.",
        psd2_sms: "Din kod för att bekräfta betalningen på {amount} EUR till {payee} är {code}",
        psd2_tts: "Hej. Din kod för att bekräfta betalningen på {amount} euro till {payee} är: {code}. Jag upprepar, din kod är: {code}.",
    },
    // Thai.
    LocaleTexts {
        tag: "th-th",
        sms: "{brand}: รหัสยืนยันของคุณคือ {code}",
        tts: "สวัสดี นี่คือรหัสยืนยัน {brand} ของคุณ: {code} ขอทวนอีกครั้ง รหัสของคุณคือ: {code}",
        psd2_sms: "รหัสยืนยันการชำระเงิน {amount} EUR ให้ {payee} คือ {code}",
        psd2_tts: "สวัสดี รหัสยืนยันการชำระเงิน {amount} ยูโร ให้ {payee} คือ: {code} ขอทวนอีกครั้ง รหัสของคุณคือ: {code}",
    },
    // Turkish.
    LocaleTexts {
        tag: "tr-tr",
        sms: "{brand}: doğrulama kodunuz {code}",
        tts: "Merhaba. {brand} doğrulama kodunuz: {code}. Tekrar ediyorum, kodunuz: {code}.",
        psd2_sms: "{payee} alıcısına yapılacak {amount} EUR tutarındaki ödemeyi onaylamak için kodunuz: {code}",
        psd2_tts: "Merhaba. {payee} alıcısına yapılacak {amount} avro tutarındaki ödemeyi onaylamak için kodunuz: {code}. Tekrar ediyorum, kodunuz: {code}.",
    },
    // Vietnamese.
    LocaleTexts {
        tag: "vi-vn",
        sms: "{brand}: mã xác minh của bạn là {code}",
        tts: "Xin chào. Đây là mã xác minh {brand} của bạn: {code}. Xin nhắc lại, mã của bạn là: {code}.",
        psd2_sms: "Mã xác nhận khoản thanh toán {amount} EUR cho {payee} là {code}",
        psd2_tts: "Xin chào. Mã xác nhận khoản thanh toán {amount} euro cho {payee} là: {code}. Xin nhắc lại, mã của bạn là: {code}.",
    },
    // Cantonese (traditional characters).
    LocaleTexts {
        tag: "yue-cn",
        sms: "{brand}：你嘅驗證碼係{code}",
        tts: "你好。呢個係你嘅{brand}驗證碼：{code}。再講一次，你嘅驗證碼係：{code}。",
        psd2_sms: "你向{payee}支付{amount} EUR嘅確認碼係{code}",
        psd2_tts: "你好。你向{payee}支付{amount}歐元嘅確認碼係：{code}。再講一次，你嘅確認碼係：{code}。",
    },
    // Chinese (simplified).
    LocaleTexts {
        tag: "zh-cn",
        sms: "{brand}：您的验证码是{code}",
        tts: "您好。这是您的{brand}验证码：{code}。再说一遍，您的验证码是：{code}。",
        psd2_sms: "您向{payee}支付{amount} EUR的确认码是{code}",
        psd2_tts: "您好。您向{payee}支付{amount}欧元的确认码是：{code}。再说一遍，您的确认码是：{code}。",
    },
    // Chinese (traditional, Taiwan).
    LocaleTexts {
        tag: "zh-tw",
        sms: "{brand}：您的驗證碼是{code}",
        tts: "您好。這是您的{brand}驗證碼：{code}。再說一次，您的驗證碼是：{code}。",
        psd2_sms: "您向{payee}付款{amount} EUR的確認碼是{code}",
        psd2_tts: "您好。您向{payee}付款{amount}歐元的確認碼是：{code}。再說一次，您的確認碼是：{code}。",
    },
    // The tags below are used only for PSD2 payment confirmations.
    // Bulgarian.
    LocaleTexts {
        tag: "bg-bg",
        sms: "{brand}: вашият код за потвърждение е {code}",
        tts: "Здравейте. Това е вашият код за потвърждение от {brand}: {code}. Повтарям, вашият код е: {code}.",
        psd2_sms: "Кодът за потвърждение на плащане в размер на {amount} EUR към {payee} е {code}",
        psd2_tts: "Здравейте. Кодът за потвърждение на плащане в размер на {amount} евро към {payee} е: {code}. Повтарям, вашият код е: {code}.",
    },
    // Estonian.
    LocaleTexts {
        tag: "ee-et",
        sms: "{brand}: sinu kinnituskood on {code}",
        tts: "Tere. See on sinu {brand} kinnituskood: {code}. Kordan, sinu kood on: {code}.",
        psd2_sms: "Sinu kood {amount} EUR makse kinnitamiseks saajale {payee} on {code}",
        psd2_tts: "Tere. Sinu kood {amount} euro suuruse makse kinnitamiseks saajale {payee} on: {code}. Kordan, sinu kood on: {code}.",
    },
    // Irish.
    LocaleTexts {
        tag: "ga-ie",
        sms: "{brand}: is é {code} do chód fíoraithe",
        tts: "Dia duit. Seo é do chód fíoraithe ó {brand}: {code}. Arís eile, is é do chód: {code}.",
        psd2_sms: "Is é {code} do chód chun d'íocaíocht {amount} EUR chuig {payee} a dheimhniú",
        psd2_tts: "Dia duit. Seo é do chód chun d'íocaíocht {amount} euro chuig {payee} a dheimhniú: {code}. Arís eile, is é do chód: {code}.",
    },
    // Latvian.
    LocaleTexts {
        tag: "lv-lv",
        sms: "{brand}: jūsu verifikācijas kods ir {code}",
        tts: "Labdien. Šis ir jūsu {brand} verifikācijas kods: {code}. Atkārtoju, jūsu kods ir: {code}.",
        psd2_sms: "Kods maksājuma {amount} EUR apmērā saņēmējam {payee} apstiprināšanai: {code}",
        psd2_tts: "Labdien. Kods maksājuma {amount} eiro apmērā saņēmējam {payee} apstiprināšanai: {code}. Atkārtoju, jūsu kods ir: {code}.",
    },
    // Lithuanian.
    LocaleTexts {
        tag: "lt-lt",
        sms: "{brand}: jūsų patvirtinimo kodas yra {code}",
        tts: "Sveiki. Tai jūsų {brand} patvirtinimo kodas: {code}. Kartoju, jūsų kodas yra: {code}.",
        psd2_sms: "Jūsų {amount} EUR mokėjimo gavėjui {payee} patvirtinimo kodas yra {code}",
        psd2_tts: "Sveiki. Jūsų {amount} eurų mokėjimo gavėjui {payee} patvirtinimo kodas yra: {code}. Kartoju, jūsų kodas yra: {code}.",
    },
    // Maltese.
    LocaleTexts {
        tag: "mt-mt",
        sms: "{brand}: il-kodiċi ta' verifika tiegħek huwa {code}",
        tts: "Bonġu. Dan huwa l-kodiċi ta' verifika tiegħek minn {brand}: {code}. Nerġa' ngħid, il-kodiċi tiegħek huwa: {code}.",
        psd2_sms: "Il-kodiċi biex tikkonferma l-ħlas ta' {amount} EUR lil {payee} huwa {code}",
        psd2_tts: "Bonġu. Il-kodiċi biex tikkonferma l-ħlas ta' {amount} ewro lil {payee} huwa: {code}. Nerġa' ngħid, il-kodiċi tiegħek huwa: {code}.",
    },
    // Slovak.
    LocaleTexts {
        tag: "sk-sk",
        sms: "{brand}: váš overovací kód je {code}",
        tts: "Dobrý deň. Toto je váš overovací kód pre {brand}: {code}. Ešte raz, váš kód je: {code}.",
        psd2_sms: "Váš kód na potvrdenie platby {amount} EUR príjemcovi {payee} je {code}",
        psd2_tts: "Dobrý deň. Váš kód na potvrdenie platby {amount} eur príjemcovi {payee} je: {code}. Ešte raz, váš kód je: {code}.",
    },
    // Slovenian.
    LocaleTexts {
        tag: "sl-si",
        sms: "{brand}: vaša koda za preverjanje je {code}",
        tts: "Pozdravljeni. To je vaša koda za preverjanje {brand}: {code}. Ponavljam, vaša koda je: {code}.",
        psd2_sms: "Vaša koda za potrditev plačila {amount} EUR prejemniku {payee} je {code}",
        psd2_tts: "Pozdravljeni. Vaša koda za potrditev plačila {amount} evrov prejemniku {payee} je: {code}. Ponavljam, vaša koda je: {code}.",
    },
];

#[cfg(test)]
mod tests {
    use super::LOCALE_TEXTS;
    use std::collections::HashSet;

    const EXPECTED_TAGS: [&str; 47] = [
        "ar-xa", "cs-cz", "cy-cy", "cy-gb", "da-dk", "de-de", "el-gr", "en-au", "en-gb", "en-in",
        "en-us", "es-es", "es-mx", "es-us", "fi-fi", "fil-ph", "fr-ca", "fr-fr", "hi-in", "hu-hu",
        "id-id", "is-is", "it-it", "ja-jp", "ko-kr", "nb-no", "nl-nl", "pl-pl", "pt-br", "pt-pt",
        "ro-ro", "ru-ru", "sv-se", "th-th", "tr-tr", "vi-vn", "yue-cn", "zh-cn", "zh-tw", "bg-bg",
        "ee-et", "ga-ie", "lv-lv", "lt-lt", "mt-mt", "sk-sk", "sl-si",
    ];

    const PLACEHOLDERS: [&str; 4] = ["{brand}", "{code}", "{payee}", "{amount}"];

    /// Every (tag, field name, text, expected counts of brand/code/payee/amount).
    fn all_texts() -> Vec<(&'static str, &'static str, &'static str, [usize; 4])> {
        LOCALE_TEXTS
            .iter()
            .flat_map(|t| {
                [
                    (t.tag, "sms", t.sms, [1, 1, 0, 0]),
                    (t.tag, "tts", t.tts, [1, 2, 0, 0]),
                    (t.tag, "psd2_sms", t.psd2_sms, [0, 1, 1, 1]),
                    (t.tag, "psd2_tts", t.psd2_tts, [0, 2, 1, 1]),
                ]
            })
            .collect()
    }

    #[test]
    fn there_are_forty_seven_unique_tags_in_the_documented_order() {
        let tags: Vec<&str> = LOCALE_TEXTS.iter().map(|t| t.tag).collect();
        assert_eq!(tags, EXPECTED_TAGS);
        let unique: HashSet<&str> = tags.iter().copied().collect();
        assert_eq!(unique.len(), 47);
    }

    #[test]
    fn every_tag_is_lowercase() {
        for t in LOCALE_TEXTS {
            assert_eq!(t.tag, t.tag.to_lowercase(), "tag {}", t.tag);
        }
    }

    #[test]
    fn every_template_has_each_placeholder_the_right_number_of_times() {
        for (tag, field, text, expected) in all_texts() {
            for (placeholder, want) in PLACEHOLDERS.iter().zip(expected) {
                assert_eq!(
                    text.matches(placeholder).count(),
                    want,
                    "{tag}.{field}: {placeholder} in {text:?}"
                );
            }
        }
    }

    #[test]
    fn no_template_has_braces_outside_placeholders() {
        for (tag, field, text, _) in all_texts() {
            let mut rest = text.to_owned();
            for placeholder in PLACEHOLDERS {
                rest = rest.replace(placeholder, "");
            }
            assert!(
                !rest.contains('{') && !rest.contains('}'),
                "{tag}.{field} has a stray brace: {text:?}"
            );
        }
    }

    #[test]
    fn no_template_is_empty_or_spans_lines() {
        for (tag, field, text, _) in all_texts() {
            assert!(!text.trim().is_empty(), "{tag}.{field} is empty");
            assert!(
                !text.contains('\n') && !text.contains('\r'),
                "{tag}.{field} contains a line break"
            );
        }
    }

    #[test]
    fn every_payment_sms_names_the_currency_as_eur_or_the_euro_sign() {
        for t in LOCALE_TEXTS {
            assert!(
                t.psd2_sms.contains("EUR") || t.psd2_sms.contains('€'),
                "{}.psd2_sms does not name the currency: {:?}",
                t.tag,
                t.psd2_sms
            );
        }
    }
}
