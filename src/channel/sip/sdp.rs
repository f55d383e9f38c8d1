//! The SDP of a call: the offer (PCMU, PCMA and telephone-event, one audio stream) and what is
//! read from the answer (where to send the audio, in which codec).

use std::net::{IpAddr, SocketAddr};

pub const PCMU: u8 = 0;
pub const PCMA: u8 = 8;
pub const TELEPHONE_EVENT: u8 = 101;

/// The offer, audio received (and sent) at `ip`:`port`.
pub fn offer(ip: IpAddr, port: u16, session: u64) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\n\
         o=verifyd {session} {session} IN {family} {ip}\r\n\
         s=verifyd\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP {PCMU} {PCMA} {TELEPHONE_EVENT}\r\n\
         a=rtpmap:{PCMU} PCMU/8000\r\n\
         a=rtpmap:{PCMA} PCMA/8000\r\n\
         a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\n\
         a=fmtp:{TELEPHONE_EVENT} 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    )
}

/// Where the callee takes audio and in which of the offered codecs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub to: SocketAddr,
    pub payload: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer has no audio stream")]
    NoAudio,
    #[error("the answer refuses audio (port 0)")]
    Refused,
    #[error("the answer takes neither PCMU nor PCMA")]
    NoCodec,
    #[error("the answer has no connection address")]
    NoAddress,
}

/// Reads the answer: the audio stream's address (its own `c=` line, else the session's), port,
/// and the first of its payload types that is PCMU or PCMA.
pub fn answer(sdp: &str) -> Result<Answer, AnswerError> {
    let mut session_ip = None;
    let mut media_ip = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut in_media = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            in_media = true;
            in_audio = m.starts_with("audio ");
            if in_audio && audio.is_none() {
                let mut fields = m.split_whitespace().skip(1);
                let port = fields
                    .next()
                    .and_then(|p| p.split('/').next()?.parse().ok());
                let payloads = fields.skip(1).filter_map(|p| p.parse().ok()).collect();
                audio = port.map(|p| (p, payloads));
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let ip = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next()?.parse().ok());
            // The session's address comes before any m= line; a stream's after its own.
            if !in_media {
                session_ip = ip;
            } else if in_audio && media_ip.is_none() {
                media_ip = ip;
            }
        }
    }
    let (port, payloads) = audio.ok_or(AnswerError::NoAudio)?;
    if port == 0 {
        return Err(AnswerError::Refused);
    }
    let payload = payloads
        .into_iter()
        .find(|p| *p == PCMU || *p == PCMA)
        .ok_or(AnswerError::NoCodec)?;
    let ip: IpAddr = media_ip.or(session_ip).ok_or(AnswerError::NoAddress)?;
    Ok(Answer {
        to: SocketAddr::new(ip, port),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_names_both_codecs_dtmf_and_the_audio_address() {
        let sdp = offer("127.0.0.1".parse().unwrap(), 20_000, 7);
        assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(sdp.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"));
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(sdp.lines().all(|l| !l.is_empty()));
    }

    #[test]
    fn an_answer_gives_the_address_and_the_first_g711_codec() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n";
        assert_eq!(
            answer(sdp).unwrap(),
            Answer {
                to: "10.0.0.1:6000".parse().unwrap(),
                payload: PCMA
            }
        );
        // A media-level address wins over the session's.
        let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n";
        assert_eq!(answer(sdp).unwrap().to, "10.0.0.2:6000".parse().unwrap());
        // A video stream's address before the audio is not the session's.
        let sdp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 7000 RTP/AVP 96\r\nc=IN IP4 10.0.0.9\r\n\
                   m=audio 6000 RTP/AVP 0\r\n";
        assert_eq!(answer(sdp).unwrap().to, "10.0.0.1:6000".parse().unwrap());
    }

    #[test]
    fn an_answer_without_usable_audio_is_an_error() {
        assert_eq!(
            answer("v=0\r\nc=IN IP4 1.2.3.4\r\n"),
            Err(AnswerError::NoAudio)
        );
        assert_eq!(
            answer("c=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"),
            Err(AnswerError::Refused)
        );
        assert_eq!(
            answer("c=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18\r\n"),
            Err(AnswerError::NoCodec)
        );
        assert_eq!(
            answer("m=audio 5 RTP/AVP 0\r\n"),
            Err(AnswerError::NoAddress)
        );
    }
}
