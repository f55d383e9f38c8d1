//! The call's audio as RTP (RFC 3550): 20 ms frames of G.711, one SSRC, consecutive sequence
//! numbers, timestamps 160 apart, the marker on the first; sent in real time.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::sdp::PCMA;
use crate::speech::g711;

pub const FRAME: usize = 160;
pub const FRAME_TIME: Duration = Duration::from_millis(20);

/// The packets for `audio` (8 kHz samples) in `payload` (PCMU or PCMA).
pub fn packets(
    audio: &[i16],
    payload: u8,
    ssrc: u32,
    first_seq: u16,
    first_ts: u32,
) -> Vec<Vec<u8>> {
    let encode = if payload == PCMA {
        g711::alaw
    } else {
        g711::ulaw
    };
    audio
        .chunks(FRAME)
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = Vec::with_capacity(12 + FRAME);
            let marker = if i == 0 { 0x80 } else { 0 };
            p.extend_from_slice(&[0x80, marker | payload]);
            p.extend_from_slice(&first_seq.wrapping_add(i as u16).to_be_bytes());
            p.extend_from_slice(&first_ts.wrapping_add((i * FRAME) as u32).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend(chunk.iter().map(|&s| encode(s)));
            // The last frame is filled with silence to a whole frame.
            p.extend(std::iter::repeat_n(encode(0), FRAME - chunk.len()));
            p
        })
        .collect()
}

/// Sends `packets` to `to`, one every 20 ms against the clock (a late frame does not delay the
/// ones after it). Returns the largest lateness of a send.
pub async fn play(
    socket: &UdpSocket,
    to: SocketAddr,
    packets: &[Vec<u8>],
) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for (i, packet) in packets.iter().enumerate() {
        let due = start + FRAME_TIME * i as u32;
        tokio::time::sleep_until(due).await;
        worst = worst.max(Instant::now() - due);
        socket.send_to(packet, to).await?;
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_number_and_time_themselves_from_the_first() {
        let audio = vec![0i16; FRAME * 2 + 10];
        let p = packets(&audio, 0, 0xdead_beef, 65_535, 1_000);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|p| p.len() == 12 + FRAME));
        assert_eq!(p[0][..2], [0x80, 0x80]);
        assert_eq!(p[1][..2], [0x80, 0x00]);
        assert_eq!(u16::from_be_bytes([p[0][2], p[0][3]]), 65_535);
        assert_eq!(u16::from_be_bytes([p[1][2], p[1][3]]), 0, "wraps");
        assert_eq!(u32::from_be_bytes(p[2][4..8].try_into().unwrap()), 1_320);
        assert_eq!(
            u32::from_be_bytes(p[2][8..12].try_into().unwrap()),
            0xdead_beef
        );
        assert!(p[2][12..].iter().all(|&b| b == 0xff), "μ-law silence");
        let a = packets(&audio, PCMA, 1, 0, 0);
        assert_eq!(a[0][1], 0x80 | PCMA);
        assert!(a[2][12..].iter().all(|&b| b == 0xd5), "A-law silence");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_go_out_every_20_ms() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let p = packets(&vec![0i16; FRAME * 50], 0, 1, 0, 0);
        let start = Instant::now();
        play(&socket, sink.local_addr().unwrap(), &p).await.unwrap();
        assert_eq!(Instant::now() - start, FRAME_TIME * 49);
    }
}
